"""The transform phase for real: demo data through copy -> load -> dbt (dbt-core + dbt-postgres, in-process)
into the staging models, tracked in raw.etl_transform_status.

Three demo tables keep it quick: definition (full_table: reloaded, so re-transformed, every run), patient and
procedurelog (incremental on DateTStamp). dbt's target/ and logs/ go to the test's temporary folder
(DBT_TARGET_PATH / DBT_LOG_PATH, set for every integration test by tests/conftest.py).

What "nothing to do" looks like: a table with no rows loaded since its last transform is not run by dbt and is
recorded as `skipped` with rows_transformed 0 (its last_load_id and last_primary_value stay).
"""

from __future__ import annotations

import datetime as dt
import re
import textwrap

import pytest
import yaml

from etl import PROJECT_ROOT, watermark
from etl.config import load_config
from etl.dbt_sources import SOURCES_PATH
from etl.tools.demo import build_demo_source
from etl.phases.transform import dbt_command
from etl.runner import run_phases
from tests.integration.engine_helpers import Pipeline

pytestmark = pytest.mark.integration

TABLES = ["definition", "patient", "procedurelog"]
KEYS = {"definition": ("DefNum", "def_num"), "patient": ("PatNum", "pat_num"), "procedurelog": ("ProcNum", "proc_num")}
PRIMARY = {"definition": "DefNum", "patient": "DateTStamp", "procedurelog": "DateTStamp"}
ALL = ("copy", "load", "transform")


@pytest.fixture
def demo(settings, monkeypatch):
    # dbt's target/ and logs/ go to the test's folder (tests/conftest.py)
    for name in ("ETL_DBT_PROJECT_DIR", "DBT_PROFILES_DIR"):
        monkeypatch.delenv(name, raising=False)
    shipped = yaml.safe_load((PROJECT_ROOT / "tables.yml").read_text(encoding="utf-8"))["tables"]
    pipeline = Pipeline(settings, {name: shipped[name] for name in TABLES})
    build_demo_source(settings.source_url, scale=0.002, tables=TABLES)
    return pipeline


def transform(p: Pipeline, tables=None, *, full=False):
    results = run_phases(p.settings, load_config(p.settings.tables_path), ["transform"], tables, full=full)
    return {r.table: r for r in results}


def status(p: Pipeline, table: str) -> dict:
    rows = p.raw("SELECT transformation_status, primary_column_name, last_primary_value, rows_transformed, last_load_id "
                 "FROM raw.etl_transform_status WHERE table_name = %s", (table,))
    return dict(zip(("status", "column", "value", "rows", "load_id"), rows[0])) if rows else {}


def last_load(p: Pipeline, table: str) -> int:
    return p.raw("SELECT max(id) FROM raw.etl_run_history WHERE phase = 'load' AND table_name = %s", (table,))[0][0]


def expected_value(p: Pipeline, table: str) -> str:
    """The primary column's largest usable value in raw, in the load phase's canonical text."""
    column = PRIMARY[table]
    values = [v for (v,) in p.raw(f'SELECT "{column}" FROM raw.{table}') if watermark.usable(v)]
    return watermark.format(max(values))


def staging_count(p: Pipeline, table: str) -> int:
    return p.raw(f"SELECT count(*) FROM staging.stg_{table}")[0][0]


def assert_status_matches_staging(p: Pipeline, table: str, rows: int) -> None:
    """The tracking row against the data: the window's rows, the largest value transformed, the last load."""
    row = status(p, table)
    assert row["status"] == "success" and row["column"] == PRIMARY[table] and row["rows"] == rows, (table, row)
    assert row["value"] == expected_value(p, table), table
    snake = {"DefNum": "def_num", "DateTStamp": "date_t_stamp"}[PRIMARY[table]]
    staged_max = p.raw(f"SELECT max({snake}) FROM staging.stg_{table}")[0][0]
    assert row["value"] == watermark.format(staged_max), table
    assert row["load_id"] == last_load(p, table)
    assert p.raw(f"SELECT max(_etl_load_id) FROM staging.stg_{table}")[0][0] <= row["load_id"]


def test_first_transform_of_the_demo_data(demo):
    result = demo.run(ALL)
    for table in TABLES:
        r = result[("transform", table)]
        raw_rows = demo.raw(f"SELECT count(*) FROM raw.{table}")[0][0]
        assert (r.ok, r.strategy, r.rows_written) == (True, "full", raw_rows), r
        assert staging_count(demo, table) == raw_rows
        assert_status_matches_staging(demo, table, raw_rows)
    history = demo.raw("SELECT table_name, status, strategy, rows_written, notes FROM raw.etl_run_history "
                       "WHERE phase = 'transform' ORDER BY table_name")
    assert [(t, s, st) for t, s, st, _, _ in history] == [(t, "success", "full") for t in sorted(TABLES)]
    assert all(f"models: stg_{t}" in notes for t, *_, notes in history)

    # snake_case names, in raw's order, the load marker kept
    raw_columns = [c for (c,) in demo.raw("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                                          "'raw' AND table_name = 'patient' ORDER BY ordinal_position")]
    stg = dict(demo.raw("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = "
                        "'staging' AND table_name = 'stg_patient' ORDER BY ordinal_position"))
    assert list(stg)[:3] == ["pat_num", "l_name", "f_name"] and len(stg) == len(raw_columns)
    assert stg["date_t_stamp"] == "timestamp without time zone" and "_etl_load_id" in stg

    # documented flags become booleans, value for value; enums stay numbers
    procs = dict(demo.raw("SELECT column_name, data_type FROM information_schema.columns "
                          "WHERE table_schema = 'staging' AND table_name = 'stg_procedurelog'"))
    assert procs["is_locked"] == procs["hide_graphics"] == "boolean" and procs["proc_status"] == "smallint"
    assert demo.raw('SELECT count(*) FROM raw.procedurelog WHERE "HideGraphics" <> 0') == \
        demo.raw("SELECT count(*) FROM staging.stg_procedurelog WHERE hide_graphics")

    # sentinel dates and empty strings become NULL (the demo data has both)
    for table in ("patient", "procedurelog"):
        dates = [c for (c,) in demo.raw("SELECT column_name FROM information_schema.columns WHERE table_schema = 'raw' "
                                        "AND table_name = %s AND data_type = 'date'", (table,))]
        sentinels = sum(demo.raw(f"SELECT count(*) FROM raw.{table} WHERE \"{c}\" IN ('0001-01-01', '1900-01-01')")[0][0]
                        for c in dates)
        assert sentinels > 0, f"the demo {table} should carry sentinel dates"
        for column in dates:
            name = re.sub("_+", "_", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2",
                                            re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", column))).strip("_").lower()
            assert demo.raw(f"SELECT count(*) FROM staging.stg_{table} WHERE {name} IN ('0001-01-01', '1900-01-01')") \
                == [(0,)], (table, column)
    assert demo.raw("SELECT count(*) FROM raw.patient WHERE \"Email\" = ''")[0][0] > 0
    assert demo.raw("SELECT count(*) FROM staging.stg_patient WHERE email = ''") == [(0,)]
    assert demo.raw("SELECT count(*) FROM staging.stg_patient WHERE email IS NULL") == \
        demo.raw("SELECT count(*) FROM raw.patient WHERE \"Email\" = '' OR \"Email\" IS NULL")

    # the generated sources name the columns that really exist, and freshness passes
    sources = yaml.safe_load(SOURCES_PATH.read_text(encoding="utf-8"))["sources"]
    declared = {(s["name"], t["name"]): [(c["name"], c["data_type"]) for c in t["columns"]]
                for s in sources for t in s["tables"]}
    for (source, table), columns in declared.items():
        if source == "opendental" and table not in TABLES:
            continue
        live = demo.raw("SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                        (f"raw.{table}",))
        assert [(n, _pg_alias(t)) for n, t in live] == [(n, _pg_alias(t)) for n, t in columns], table
    assert dbt_command(demo.settings, ["source", "freshness", "--select",
                                       *[f"source:opendental.{t}" for t in TABLES]]) == 0


def _pg_alias(type_name: str) -> str:
    return (type_name.replace("character varying", "varchar").replace("timestamp without time zone", "timestamp")
            .replace("numeric(20,0)", "numeric(20)"))


def test_an_update_at_the_source_flows_into_staging(demo):
    demo.run(ALL)
    newest = demo.source("SELECT max(DateTStamp) FROM patient")[0][0]
    changed = newest + dt.timedelta(seconds=1)  # past every watermark, long before any open second
    demo.source("UPDATE patient SET LName = 'Zedd', Email = '', DateTStamp = %s WHERE PatNum = 7", (changed,))
    demo.source("DELETE FROM definition WHERE DefNum = 5")

    result = demo.run(ALL)

    assert demo.raw("SELECT pat_num, l_name, email, date_t_stamp FROM staging.stg_patient WHERE pat_num = 7") == \
        [(7, "Zedd", None, changed)]
    patient = result[("transform", "patient")]
    assert (patient.strategy, patient.rows_written) == ("incremental", 1)
    assert_status_matches_staging(demo, "patient", 1)
    assert status(demo, "patient")["value"] == changed.strftime("%Y-%m-%d %H:%M:%S")
    # procedurelog got no new rows: not run; definition is reloaded in full by every load, so re-transformed,
    # and the row deleted at the source is gone from staging too
    assert (result[("transform", "procedurelog")].strategy, result[("transform", "procedurelog")].rows_written) == \
        (None, 0)
    assert status(demo, "procedurelog")["status"] == "skipped"
    assert result[("transform", "definition")].rows_written == 654
    assert demo.raw("SELECT count(*) FROM staging.stg_definition WHERE def_num = 5") == [(0,)]
    assert staging_count(demo, "definition") == 654


def test_a_row_loaded_late_with_an_old_timestamp_is_still_transformed(demo):
    demo.run(ALL)
    before = status(demo, "procedurelog")
    old = dt.datetime(2001, 2, 3, 4, 5, 6)
    assert before["value"] > old.isoformat(sep=" ")
    demo.source("UPDATE procedurelog SET ProcFee = 4321.5, DateTStamp = %s WHERE ProcNum = 11", (old,))
    # A re-read behind the watermarks (a lookback, a repair): copy and load go back to 2001, so the row whose
    # timestamp is far older than anything transformed reaches raw now, in a new load.
    demo.replica("UPDATE etl_copy_status SET last_primary_value = '2001-01-01 00:00:00' WHERE table_name = 'procedurelog'")
    demo.raw("UPDATE raw.etl_load_status SET last_primary_value = '2001-01-01 00:00:00' WHERE table_name = 'procedurelog'")

    result = demo.run(ALL, ["procedurelog"])

    assert result[("load", "procedurelog")].rows_written == 1
    assert result[("transform", "procedurelog")].rows_written == 1
    assert demo.raw("SELECT proc_fee, date_t_stamp FROM staging.stg_procedurelog WHERE proc_num = 11") == [(4321.5, old)]
    after = status(demo, "procedurelog")
    assert (after["rows"], after["value"], after["load_id"]) == (1, before["value"], last_load(demo, "procedurelog"))


def _user_project(tmp_path, broken: bool):
    """A dbt project of the user's own that installs the etl_tracking package (packages.yml, local)."""
    root = tmp_path / "clinic_dbt"
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "dbt_project.yml").write_text(textwrap.dedent("""\
        name: clinic
        version: "1.0.0"
        config-version: 2
        profile: opendental_etl
        flags: {send_anonymous_usage_stats: false}
        models:
          clinic:
            +materialized: incremental
            +schema: clinic            # dbt's own naming here: analytics_clinic
        """))
    (root / "packages.yml").write_text(f"packages:\n  - local: {PROJECT_ROOT / 'dbt' / 'etl_tracking'}\n")
    (root / "models" / "sources.yml").write_text(textwrap.dedent("""\
        version: 2
        sources:
          - name: od
            schema: "{{ env_var('ETL_RAW_SCHEMA') }}"
            tables: [{name: patient}, {name: procedurelog}]
        """))
    (root / "models" / "clinic_patients.sql").write_text(textwrap.dedent("""\
        {{ config(unique_key='PatNum', post_hook="{{ etl_tracking.etl_record_transform('patient') }}") }}
        select "PatNum", "LName", "_etl_load_id" from {{ source('od', 'patient') }}
        where {{ etl_tracking.etl_incremental_filter('patient') }}
        """))
    column = '"NoSuchColumn"' if broken else '"ProcFee"'
    (root / "models" / "clinic_procedures.sql").write_text(textwrap.dedent(f"""\
        {{{{ config(unique_key='ProcNum', post_hook="{{{{ etl_tracking.etl_record_transform('procedurelog') }}}}") }}}}
        select "ProcNum", {column} from {{{{ source('od', 'procedurelog') }}}}
        where {{{{ etl_tracking.etl_incremental_filter('procedurelog') }}}}
        """))
    return root


def test_a_failing_model_is_recorded_failed_while_the_others_succeed(demo, tmp_path, monkeypatch):
    from etl.cli import main

    demo.run(("copy", "load"))
    project = _user_project(tmp_path, broken=True)
    monkeypatch.setenv("ETL_DBT_PROJECT_DIR", str(project))
    s = demo.settings
    for name, url in (("ETL_SOURCE_URL", s.source_url), ("ETL_REPLICA_URL", s.replica_url),
                      ("ETL_ANALYTICS_URL", s.analytics_url)):
        monkeypatch.setenv(name, url.render_as_string(hide_password=False))
    monkeypatch.setenv("ETL_TABLES", str(s.tables_path))
    monkeypatch.setenv("ETL_RAW_SCHEMA", s.raw_schema)

    assert main(["transform"]) == 1

    assert status(demo, "patient")["status"] == "success"
    assert demo.raw("SELECT count(*) FROM analytics_clinic.clinic_patients") == demo.raw("SELECT count(*) FROM raw.patient")
    failed = status(demo, "procedurelog")
    assert (failed["status"], failed["rows"], failed["load_id"]) == ("failed", 0, None)
    assert status(demo, "definition")["status"] == "skipped"  # no model of this project reads it
    error = demo.raw("SELECT error FROM raw.etl_run_history WHERE phase = 'transform' "
                     "AND table_name = 'procedurelog' ORDER BY id DESC LIMIT 1")[0][0]
    assert "model clinic_procedures" in error and "NoSuchColumn" in error

    # fixed: the failed table is taken again although no new load came, the others have nothing to do
    _user_project(tmp_path, broken=False)
    assert main(["transform"]) == 0
    assert status(demo, "procedurelog")["status"] == "success"
    assert status(demo, "procedurelog")["load_id"] == last_load(demo, "procedurelog")
    assert status(demo, "patient")["status"] == "skipped"
    assert demo.raw("SELECT count(*) FROM analytics_clinic.clinic_procedures") == demo.raw("SELECT count(*) FROM raw.procedurelog")


def test_full_rebuilds_the_models(demo):
    demo.run(ALL)
    demo.raw("INSERT INTO staging.stg_patient (pat_num, l_name) VALUES (-1, 'not from raw')")
    result = transform(demo, full=True)
    for table in TABLES:
        raw_rows = demo.raw(f"SELECT count(*) FROM raw.{table}")[0][0]
        assert (result[table].ok, result[table].strategy, result[table].rows_written) == (True, "full", raw_rows)
        assert_status_matches_staging(demo, table, raw_rows)
    assert demo.raw("SELECT count(*) FROM staging.stg_patient WHERE pat_num = -1") == [(0,)]


def test_a_second_run_without_new_loads_transforms_nothing(demo):
    demo.run(ALL)
    before = {t: status(demo, t) for t in TABLES}
    rows_before = demo.raw("SELECT pat_num, xmin::text FROM staging.stg_patient ORDER BY 1")

    again = demo.run(ALL)

    for table in ("patient", "procedurelog"):
        r = again[("transform", table)]
        assert (r.ok, r.strategy, r.rows_written) == (True, None, 0)
        after = status(demo, table)
        assert (after["status"], after["rows"]) == ("skipped", 0)
        assert (after["value"], after["load_id"]) == (before[table]["value"], before[table]["load_id"])
        assert after["load_id"] < last_load(demo, table)  # a load ran, but changed no row
    assert demo.raw("SELECT pat_num, xmin::text FROM staging.stg_patient ORDER BY 1") == rows_before
    # definition is read in full every run, but raw is rewritten only when a row changed (small full_table
    # lookups are staged and compared first: etl/phases/load.py SMALL_TABLE), so nothing new to transform
    assert again[("transform", "definition")].rows_written == 0

    alone = transform(demo)
    assert {t: (r.ok, r.rows_written) for t, r in alone.items()} == {t: (True, 0) for t in TABLES}
    notes = demo.raw("SELECT notes FROM raw.etl_run_history WHERE phase = 'transform' AND table_name = 'patient' "
                     "ORDER BY id DESC LIMIT 1")[0][0]
    assert "no new loads since load" in notes
