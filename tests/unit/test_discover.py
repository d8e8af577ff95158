"""`etl discover` without a database: the rules on hand-made tables and on all 93 tables of the fact sheet,
the merge (your entries kept, new tables added, gone ones reported) and --check's coverage."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from etl import discover as d
from etl.config import parse_config
from etl.tools.demo import clinic_tables
from etl.render import Ident
from etl.schema import Column

PATH = Path("tables.yml")
NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.timezone.utc)


def col(name: str, column_type: str, *, auto: bool = False, on_update: bool = False) -> Column:
    base = column_type.split("(")[0].split(" ")[0]
    extra = "auto_increment" if auto else "on update current_timestamp()" if on_update else ""
    size = int(column_type.split("(")[1].split(")")[0]) if "(" in column_type else None
    return Column(name=Ident(name), data_type=base, column_type=column_type, nullable=False, default=None,
                  extra=extra, charset=None, collation=None, precision=None, scale=None,
                  char_length=size if base in ("char", "varchar") else None)


def table(name: str, *columns: Column, key=("Num",), rows: int = 50_000, avg: int = 200) -> d.SourceTable:
    return d.SourceTable(name=name, engine="MyISAM", rows=rows, avg_row_length=avg, columns=columns,
                         primary_key=tuple(key))


NUM = col("Num", "bigint(20)", auto=True)


# ---------------------------------------------------------------- the rules, one at a time

def test_a_server_maintained_timestamp_is_the_watermark() -> None:
    t = table("procedurelog", NUM, col("ProcDate", "date"), col("DateTStamp", "timestamp", on_update=True),
              col("SecDateEntry", "datetime"))
    decision = d.decide(t)
    assert decision.settings == {
        "primary_key": "Num", "incremental_columns": ["Num", "DateTStamp"], "primary_incremental_column": "DateTStamp",
        "extraction_strategy": "incremental", "batch_size": 83_000, "delete_detection": "reconcile",
        "estimated_rows": 50_000}
    assert "ON UPDATE CURRENT_TIMESTAMP" in decision.why["primary_incremental_column"]
    assert set(decision.why) == {"primary_incremental_column", "extraction_strategy", "batch_size", "delete_detection"}


def test_a_workstation_clock_column_is_never_chosen_over_a_server_one() -> None:
    # taskhist: DateTStamp is a plain DATETIME OpenDental writes from the workstation; SecDateTEdit is the server's
    t = table("taskhist", NUM, col("DateTStamp", "datetime"), col("SecDateTEdit", "timestamp", on_update=True))
    decision = d.decide(t)
    assert decision.settings["primary_incremental_column"] == "SecDateTEdit"
    assert decision.settings["incremental_columns"] == ["Num", "SecDateTEdit"]


def test_of_several_server_stamps_opendentals_names_win() -> None:
    t = table("x", NUM, col("Other", "timestamp", on_update=True), col("SecDateTEdit", "timestamp", on_update=True))
    decision = d.decide(t)
    assert decision.settings["primary_incremental_column"] == "SecDateTEdit"
    assert "also: Other" in decision.why["primary_incremental_column"]


def test_a_small_table_with_a_server_stamp_stays_incremental() -> None:
    t = table("provider", NUM, col("DateTStamp", "timestamp", on_update=True), rows=59)
    assert d.decide(t).settings["extraction_strategy"] == "incremental"


def test_an_append_only_log_follows_its_key_and_needs_no_delete_detection() -> None:
    t = table("securitylog", NUM, col("LogDateTime", "datetime"), col("LogText", "text"), rows=4_737_615, avg=120)
    decision = d.decide(t)
    assert decision.settings["primary_incremental_column"] == "Num"
    assert decision.settings["incremental_columns"] == ["Num"]
    assert decision.settings["extraction_strategy"] == "incremental"
    assert decision.settings["delete_detection"] == "none"
    assert "append-only" in decision.why["primary_incremental_column"]


@pytest.mark.parametrize("rows, strategy", [(0, "full_table"), (d.FULL_TABLE_MAX_ROWS, "full_table"),
                                            (d.FULL_TABLE_MAX_ROWS + 1, "incremental")])
def test_the_full_table_threshold(rows: int, strategy: str) -> None:
    decision = d.decide(table("definition", NUM, col("ItemName", "varchar(255)"), rows=rows))
    assert decision.settings["extraction_strategy"] == strategy
    expected_deletes = "none"  # full_table: replaced every run; above: an append-only log
    assert decision.settings["delete_detection"] == expected_deletes


def test_edit_stamps_from_the_workstation_make_an_or_fallback() -> None:
    t = table("sheet", NUM, col("DateTimeSheet", "datetime"), col("DateTSheetEdited", "datetime"), rows=10_621)
    decision = d.decide(t)
    assert decision.settings["primary_incremental_column"] == "none"
    assert decision.settings["incremental_columns"] == ["Num", "DateTSheetEdited"]
    assert decision.settings["extraction_strategy"] == "incremental"
    assert decision.settings["delete_detection"] == "reconcile"
    assert "workstation" in decision.why["primary_incremental_column"]


def test_nothing_to_follow_means_full_table_whatever_the_size() -> None:
    t = table("famaging", col("PatNum", "bigint(20)"), col("Note", "text"), key=("PatNum",), rows=500_000)
    decision = d.decide(t)
    assert decision.settings["extraction_strategy"] == "full_table"
    assert decision.settings["primary_incremental_column"] == "none" and decision.settings["incremental_columns"] == []
    assert parse_config({"tables": {"famaging": decision.settings}}, PATH)  # the config accepts it


def test_tables_without_a_usable_key_are_listed_with_what_to_do() -> None:
    no_key = d.decide(table("tmp", col("A", "int(11)"), key=()))
    assert isinstance(no_key, d.Unconfigured) and "ADD PRIMARY KEY" in no_key.reason
    float_key = d.decide(table("odd", col("K", "double"), key=("K",)))
    assert isinstance(float_key, d.Unconfigured) and "K (double)" in float_key.reason
    assert "exclude_tables" in float_key.reason


def test_a_composite_key_is_configured_but_flagged() -> None:
    t = table("link", col("A", "bigint(20)"), col("B", "bigint(20)"), col("SecDateTEdit", "timestamp", on_update=True),
              key=("A", "B"))
    decision = d.decide(t)
    assert decision.settings["primary_key"] == ["A", "B"]
    assert decision.settings["incremental_columns"] == ["SecDateTEdit"]
    assert decision.settings["delete_detection"] == "none"  # reconcile needs one integer key
    assert any("verify and reconcile skip" in n for n in decision.notes)


@pytest.mark.parametrize("avg, rows", [(0, 10_000), (10, 100_000), (138, 100_000), (412, 40_000), (2_000, 8_000),
                                       (50_000, 1_000)])
def test_batch_size_follows_the_row_length(avg: int, rows: int) -> None:
    assert d.batch_size(avg)[0] == rows


def test_deletedobject_only_where_every_deletion_is_logged() -> None:
    t = table("appointment", NUM, col("DateTStamp", "timestamp", on_update=True))
    shipped = d.decide(t)
    assert shipped.settings["delete_detection"] == "reconcile" and "deleted_object_type" not in shipped.settings
    assert "histappointment" in shipped.why["delete_detection"]
    complete = {"appointment": d.DeleteLog(0, "Appointment", "appointment", True, "")}
    logged = d.decide(t, complete)
    assert logged.settings["delete_detection"] == "deletedobject" and logged.settings["deleted_object_type"] == 0
    assert parse_config({"tables": {"appointment": logged.settings}}, PATH).tables["appointment"].deleted_object_type == 0


def test_the_deleted_object_type_numbers() -> None:
    """OpenDental's DeletedObjectType as in its release branches 21.1 .. 24.3 (see etl/discover.py)."""
    numbers = {name: log.object_type for name, log in d.DELETE_LOG.items()}
    assert numbers == {"appointment": 0, "schedule": 1, "recall": 2, "rxpat": 3, "labpanel": 4, "labresult": 5,
                       "drugunit": 6, "medication": 7, "medicationpat": 8, "allergy": 9, "allergydef": 10,
                       "disease": 11, "diseasedef": 12, "icd9": 13, "provider": 14, "pharmacy": 15, "statement": 16,
                       "document": 17}
    assert not any(log.complete for log in d.DELETE_LOG.values())


# ---------------------------------------------------------------- the rules on the 93 tables of the fact sheet

def fact_sheet_source(scale: float = 1.0) -> d.Source:
    tables = {}
    for name, t in clinic_tables().items():
        columns = tuple(col(c.name, c.type, auto=c.auto_increment, on_update=c.on_update_current_timestamp)
                        for c in t.columns)
        tables[name] = d.SourceTable(name=name, engine=t.engine, rows=round(t.estimated_rows * scale),
                                     avg_row_length=150, columns=columns, primary_key=tuple(t.primary_key))
    return d.Source(database="opendental", server_version="10.11.6-MariaDB", opendental_version="24.2.15.0",
                    tables=tables)


def test_every_fact_sheet_table_gets_a_valid_entry_and_a_server_stamp_when_it_has_one() -> None:
    source = fact_sheet_source()
    facts = clinic_tables()
    decisions = {name: d.decide(t) for name, t in source.tables.items()}
    assert not [n for n, x in decisions.items() if isinstance(x, d.Unconfigured)]
    config = parse_config({"tables": {n: x.settings for n, x in decisions.items()}}, PATH)
    assert len(config.tables) == 93
    assert {t.extraction_strategy for t in config.tables.values()} == {"full_table", "incremental"}
    for name, decision in decisions.items():
        stamps = [c.name for c in facts[name].columns if c.on_update_current_timestamp]
        primary = decision.settings["primary_incremental_column"]
        if stamps:
            assert primary in stamps, name
        else:
            assert primary not in ("DateTStamp", "SecDateTEdit") or name == "taskhist", name
    # where the clinic itself followed a server stamp, discover agrees
    for name, t in facts.items():
        if t.primary_incremental_column in [c.name for c in t.columns if c.on_update_current_timestamp]:
            assert decisions[name].settings["primary_incremental_column"] == t.primary_incremental_column, name
    assert decisions["taskhist"].settings["primary_incremental_column"] == "SecDateTEdit"
    assert decisions["securitylog"].settings["primary_incremental_column"] == "SecurityLogNum"
    assert decisions["definition"].settings["extraction_strategy"] == "full_table"


# ---------------------------------------------------------------- merging

def merged(source: d.Source, text: str | None) -> d.Outcome:
    return d.merge(source, text, path=PATH, now=NOW)


def small_source(**extra: d.SourceTable) -> d.Source:
    tables = {
        "patient": table("patient", col("PatNum", "bigint(20)", auto=True), col("LName", "varchar(100)"),
                         col("DateTStamp", "timestamp", on_update=True), key=("PatNum",), rows=35_135),
        "definition": table("definition", col("DefNum", "bigint(20)", auto=True), col("ItemName", "varchar(255)"),
                            key=("DefNum",), rows=655),
        "nokey": table("nokey", col("A", "int(11)"), key=()),
    }
    tables.update(extra)
    return d.Source(database="opendental", server_version="10.11.6-MariaDB", opendental_version=None, tables=tables)


def test_a_new_file_is_valid_complete_and_explains_itself() -> None:
    outcome = merged(small_source(), None)
    document = yaml.safe_load(outcome.text)
    config = parse_config(document, PATH)
    assert set(config.tables) == {"patient", "definition"}
    assert outcome.added == ["definition", "patient"] and outcome.unconfigured.keys() == {"nokey"}
    meta = document["metadata"]["discover"]
    assert meta["rule_version"] == d.RULE_VERSION and meta["generated_at"] == "2025-06-01T12:00:00Z"
    assert meta["source"] == {"database": "opendental", "server_version": "10.11.6-MariaDB", "opendental_version": None}
    assert "no primary key" in meta["unconfigured"]["nokey"]
    assert meta["columns"]["patient"] == ["PatNum", "LName", "DateTStamp"]
    assert document["metadata"]["exclude_tables"] == []
    entry = document["tables"]["patient"]
    assert entry["x_discover"]["fingerprint"] == d.fingerprint(entry)
    assert outcome.text.startswith("# tables.yml written by `etl discover`")


def test_running_again_on_an_unchanged_source_changes_nothing() -> None:
    first = merged(small_source(), None)
    again = d.merge(small_source(), first.text, path=PATH, now=NOW + dt.timedelta(days=3))
    assert (again.changed, again.text, again.diff) == (False, first.text, "")


def test_your_edits_are_kept_as_you_wrote_them() -> None:
    text = merged(small_source(), None).text
    text = text.replace("    extraction_strategy: incremental\n",
                        "    extraction_strategy: full_table   # we reload patients nightly\n", 1)
    assert "full_table   # we reload" in text
    grown = table("patient", col("PatNum", "bigint(20)", auto=True), col("LName", "varchar(100)"),
                  col("DateTStamp", "timestamp", on_update=True), col("Email", "varchar(100)"), key=("PatNum",),
                  rows=40_000)
    outcome = merged(small_source(patient=grown), text)
    assert outcome.kept_yours == ["patient"] and outcome.changed
    assert "extraction_strategy: full_table   # we reload patients nightly" in outcome.text
    document = yaml.safe_load(outcome.text)
    assert document["tables"]["patient"]["extraction_strategy"] == "full_table"
    assert document["tables"]["patient"]["estimated_rows"] == 35_135  # yours: not even the estimate is touched
    assert document["metadata"]["discover"]["columns"]["patient"][-1] == "Email"
    assert "+    extraction_strategy" not in outcome.diff and "Email" in outcome.diff


def test_deleting_the_x_discover_block_makes_an_entry_yours() -> None:
    document = yaml.safe_load(merged(small_source(), None).text)
    del document["tables"]["definition"]["x_discover"]
    text = yaml.safe_dump(document, sort_keys=False)
    outcome = merged(small_source(), text)
    assert outcome.kept_yours == ["definition"]
    assert yaml.safe_load(outcome.text)["tables"]["definition"] == document["tables"]["definition"]


def test_new_tables_are_added_gone_ones_reported_excluded_ones_left_out() -> None:
    text = merged(small_source(), None).text
    document = yaml.safe_load(text)
    document["tables"]["mine"] = {"primary_key": "MineNum", "extraction_strategy": "full_table"}
    document["metadata"]["exclude_tables"] = ["extra2"]
    text = yaml.safe_dump(document, sort_keys=False)
    source = small_source(extra=table("extra", NUM, col("SecDateTEdit", "timestamp", on_update=True)),
                          extra2=table("extra2", NUM, rows=5))
    del source.tables["definition"]
    outcome = merged(source, text)
    assert outcome.added == ["extra"]
    assert outcome.removed == ["definition"]          # discover's entry of a table gone from the source
    assert outcome.gone_kept == ["mine"]              # yours: kept, and reported
    assert "extra2" not in yaml.safe_load(outcome.text)["tables"]
    assert "-  definition:" in outcome.diff and "+  extra:" in outcome.diff


def test_a_managed_entry_follows_the_source() -> None:
    text = merged(small_source(), None).text
    stamped = table("definition", col("DefNum", "bigint(20)", auto=True), col("ItemName", "varchar(255)"),
                    col("DateTStamp", "timestamp", on_update=True), key=("DefNum",), rows=655)
    outcome = merged(small_source(definition=stamped), text)
    assert outcome.updated == ["definition"]
    entry = yaml.safe_load(outcome.text)["tables"]["definition"]
    assert entry["primary_incremental_column"] == "DateTStamp" and entry["extraction_strategy"] == "incremental"


def test_a_broken_entry_of_yours_stops_the_merge_with_its_name() -> None:
    from etl.errors import ConfigError

    document = yaml.safe_load(merged(small_source(), None).text)
    document["tables"]["patient"]["batch_size"] = "lots"
    with pytest.raises(ConfigError, match="table 'patient': batch_size"):
        merged(small_source(), yaml.safe_dump(document, sort_keys=False))


def test_fingerprint_covers_settings_only() -> None:
    entry = {"primary_key": "PatNum", "incremental_columns": ["PatNum"], "primary_incremental_column": "none",
             "extraction_strategy": "incremental", "batch_size": 100, "delete_detection": "reconcile"}
    base = d.fingerprint(entry)
    assert d.fingerprint(dict(entry, estimated_rows=5, x_discover={"why": {}})) == base
    assert d.fingerprint(dict(entry, primary_key=["PatNum"], primary_incremental_column=None)) == base
    assert d.fingerprint(dict(entry, batch_size=101)) != base


# ---------------------------------------------------------------- --check

def test_coverage_of_new_tables_and_columns() -> None:
    text = merged(small_source(), None).text
    assert d.coverage(small_source(), text, PATH).covered
    added = d.coverage(small_source(audit=table("audit", NUM)), text, PATH)
    assert (added.covered, added.new_tables) == (False, ["audit"])
    grown = table("definition", col("DefNum", "bigint(20)", auto=True), col("ItemName", "varchar(255)"),
                  col("ItemColor", "int(11)"), key=("DefNum",), rows=655)
    wider = d.coverage(small_source(definition=grown), text, PATH)
    assert (wider.covered, wider.new_columns) == (False, {"definition": ["ItemColor"]})
    narrower = table("definition", col("DefNum", "bigint(20)", auto=True), key=("DefNum",), rows=655)
    dropped = d.coverage(small_source(definition=narrower), text, PATH)
    assert dropped.covered and dropped.gone_columns == {"definition": ["ItemName"]}
    document = yaml.safe_load(text)
    document["metadata"]["exclude_tables"] = ["audit"]
    assert d.coverage(small_source(audit=table("audit", NUM)), yaml.safe_dump(document), PATH).covered


def test_the_threshold_given_once_is_recorded_and_reused() -> None:
    first = d.merge(small_source(), None, path=PATH, now=NOW, full_table_max_rows=100)
    document = yaml.safe_load(first.text)
    assert document["metadata"]["discover"]["full_table_max_rows"] == 100
    assert document["tables"]["definition"]["extraction_strategy"] == "incremental"  # 655 rows > 100
    again = d.merge(small_source(), first.text, path=PATH, now=NOW)
    assert not again.changed
    default = d.merge(small_source(), None, path=PATH, now=NOW)
    assert yaml.safe_load(default.text)["tables"]["definition"]["extraction_strategy"] == "full_table"
