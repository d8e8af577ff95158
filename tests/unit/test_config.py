"""etl/config.py: tables.yml -> frozen TableConfig; every problem reported at once, naming file, table and key."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from etl import PROJECT_ROOT
from etl.config import DEFAULT_BATCH_SIZE, TableConfig, load_config
from etl.errors import ConfigError, EtlError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tables.yml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


GOOD_TABLE = """
primary_key: PatNum
incremental_columns: [PatNum, DateTStamp]
primary_incremental_column: DateTStamp
"""


def one_table(name: str, body: str) -> str:
    return "tables:\n  " + name + ":\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n"


# --------------------------------------------------------------------------------------------------
# Good files


def test_demo_tables_yml_loads() -> None:
    config = load_config(PROJECT_ROOT / "tables.yml")
    assert len(config.tables) == 12
    assert config.tables["appointment"].primary_incremental_column is None
    assert config.tables["appointment"].incremental_columns == ("AptNum", "DateTStamp", "AptDateTime")
    assert config.tables["patient"].primary_key == ("PatNum",)
    assert config.tables["definition"].is_full_table
    assert config.tables["securitylog"].extraction_strategy == "incremental_chunked"


def test_defaults_and_frozen(tmp_path) -> None:
    table = load_config(write(tmp_path, one_table("patient", GOOD_TABLE))).tables["patient"]
    assert table == TableConfig(name="patient", primary_key=("PatNum",), incremental_columns=("PatNum", "DateTStamp"),
                                primary_incremental_column="DateTStamp", extraction_strategy="incremental",
                                batch_size=DEFAULT_BATCH_SIZE, delete_detection="none")
    with pytest.raises(dataclasses.FrozenInstanceError):
        table.batch_size = 5  # type: ignore[misc]


def test_informational_and_user_keys_and_metadata_block_are_accepted(tmp_path) -> None:
    path = write(tmp_path, """
        metadata:
          description: anything at all
          owner: {team: data}
        tables:
          patient:
            primary_key: PatNum
            incremental_columns: [DateTStamp]
            primary_incremental_column: DateTStamp
            estimated_rows: 35135
            sync_profile: in_place_updates
            engine: MyISAM
            description: the practice's patients
            monitoring:
              alert_after_hours: 24
              channels: [email]
            x_discover: {fingerprint: abc, why: {primary_key: the source key}}
            x_owner: front desk
        x_notes: anything
    """)
    assert list(load_config(path).tables) == ["patient"]


@pytest.mark.parametrize("key, value, shown", [
    ("delete_detecton", "reconcile", "unknown key 'delete_detecton'; did you mean 'delete_detection'?"),
    ("extraction_stratgy", "full_table", "unknown key 'extraction_stratgy'; did you mean 'extraction_strategy'?"),
    ("primary_incremental_colum", "PatNum",
     "unknown key 'primary_incremental_colum'; did you mean 'primary_incremental_column'?"),
    ("batchsize", "100", "unknown key 'batchsize'; did you mean 'batch_size'?"),
    ("estimated_row", "10", "unknown key 'estimated_row'; did you mean 'estimated_rows'?"),
    ("xdiscover", "{}", "unknown key 'xdiscover'; did you mean 'x_discover'?"),
])
def test_misspelt_table_key_is_an_error_with_a_suggestion(tmp_path, key: str, value: str, shown: str) -> None:
    path = write(tmp_path, one_table("patient", GOOD_TABLE + f"{key}: {value}\n"))
    assert error_of(path) == f"{path}: table 'patient': {shown} (keys of your own start with x_)"


def test_unknown_table_key_without_a_close_match_lists_the_keys(tmp_path) -> None:
    path = write(tmp_path, one_table("patient", GOOD_TABLE + "frobnicate: 1\n"))
    message = error_of(path)
    assert message.startswith(f"{path}: table 'patient': unknown key 'frobnicate'; expected one of primary_key, ")
    assert "x_discover" in message and "\n" not in message


def test_every_unknown_key_is_its_own_line(tmp_path) -> None:
    path = write(tmp_path, one_table("patient", GOOD_TABLE + "delete_detecton: none\nbatchsize: 5\n"))
    assert len(error_of(path).splitlines()) == 2


def test_discover_settings_are_the_config_settings() -> None:
    from etl import config, discover
    assert discover.SETTING_KEYS is config.SETTING_KEYS
    assert not set(config.SETTING_KEYS) & set(config.INFORMATIONAL_KEYS)


@pytest.mark.parametrize("spelling", ["none", "None", "NONE", "null", "~", "''", "' none '"])
def test_primary_incremental_column_none_means_fallback(tmp_path, spelling: str) -> None:
    path = write(tmp_path, one_table("appointment", f"""
        primary_key: AptNum
        incremental_columns: [AptNum, DateTStamp]
        primary_incremental_column: {spelling}
    """))
    assert load_config(path).tables["appointment"].primary_incremental_column is None


def test_primary_incremental_column_absent_means_fallback(tmp_path) -> None:
    path = write(tmp_path, one_table("appointment", "primary_key: AptNum\nincremental_columns: [AptNum]"))
    assert load_config(path).tables["appointment"].primary_incremental_column is None


def test_single_column_may_be_a_string(tmp_path) -> None:
    path = write(tmp_path, one_table("t", "primary_key: Id\nincremental_columns: Id\nprimary_incremental_column: Id"))
    table = load_config(path).tables["t"]
    assert table.primary_key == ("Id",) and table.incremental_columns == ("Id",)


def test_full_table_needs_no_incremental_column(tmp_path) -> None:
    path = write(tmp_path, one_table("definition", "primary_key: DefNum\nextraction_strategy: full_table"))
    assert load_config(path).tables["definition"].is_full_table


def test_select(tmp_path) -> None:
    config = load_config(write(tmp_path, one_table("patient", GOOD_TABLE)))
    assert [t.name for t in config.select(None)] == ["patient"]
    assert [t.name for t in config.select(["patient"])] == ["patient"]
    with pytest.raises(ConfigError) as info:
        config.select(["patient", "nope", "other"])
    assert str(info.value) == f"{config.path}: table(s) not configured: nope, other"


# --------------------------------------------------------------------------------------------------
# Broken files: exact messages


def test_malformed_yaml_reports_the_line(tmp_path) -> None:
    path = write(tmp_path, """
        tables:
          patient:
            primary_key: PatNum
           incremental_columns: [PatNum]
    """)
    assert error_of(path) == f"{path}:4:4: malformed YAML: expected <block end>, but found '<block mapping start>'"


def test_malformed_yaml_unclosed_bracket(tmp_path) -> None:
    path = write(tmp_path, """
        tables:
          patient:
            primary_key: [PatNum
    """)
    message = error_of(path)
    assert message.startswith(f"{path}:4:") and "malformed YAML: " in message


def test_missing_file(tmp_path) -> None:
    path = tmp_path / "nope.yml"
    assert error_of(path) == f"{path}: file not found (set ETL_TABLES to the tables.yml to use)"


@pytest.mark.parametrize("text", ["", "[]", "tables: [a, b]", "other: 1"])
def test_no_tables_mapping(tmp_path, text: str) -> None:
    path = write(tmp_path, text + "\n")
    assert error_of(path) == f"{path}: expected a top-level 'tables:' mapping of table name to settings"


def test_unknown_top_level_key(tmp_path) -> None:
    path = write(tmp_path, "tables:\n  patient:\n    primary_key: PatNum\n    primary_incremental_column: PatNum\n"
                           "sync: daily\n")
    assert error_of(path) == (f"{path}: unknown top-level key 'sync'; expected one of tables, metadata "
                              "(keys of your own start with x_)")


def test_misspelt_top_level_key(tmp_path) -> None:
    path = write(tmp_path, "tables:\n  patient:\n    primary_key: PatNum\n    primary_incremental_column: PatNum\n"
                           "metdata: {}\n")
    assert error_of(path) == (f"{path}: unknown top-level key 'metdata'; did you mean 'metadata'? "
                              "(keys of your own start with x_)")


def test_unknown_extraction_strategy(tmp_path) -> None:
    path = write(tmp_path, one_table("patient", GOOD_TABLE + "extraction_strategy: sometimes\n"))
    assert error_of(path) == (f"{path}: table 'patient': extraction_strategy: expected one of full_table, "
                              "incremental, incremental_chunked, got 'sometimes'")


@pytest.mark.parametrize("value, shown", [
    ("lots", "'lots'"), ("'100'", "'100'"), ("1.5", "1.5"), ("-5", "-5"), ("0", "0"), ("true", "True"),
    ("null", "None"),
])
def test_batch_size_must_be_a_positive_integer(tmp_path, value: str, shown: str) -> None:
    path = write(tmp_path, one_table("patient", GOOD_TABLE + f"batch_size: {value}\n"))
    assert error_of(path) == f"{path}: table 'patient': batch_size: expected a positive integer, got {shown}"


@pytest.mark.parametrize("name, shown", [("\"pat'ient\"", "\"pat'ient\""), ("'a;b'", "'a;b'"),
                                         ('"a b"', "'a b'"), ("'1abc'", "'1abc'"), ("'a`b'", "'a`b'")])
def test_table_name_must_be_plain(tmp_path, name: str, shown: str) -> None:
    path = write(tmp_path, one_table(name, GOOD_TABLE))
    assert error_of(path) == (f"{path}: table {shown}: the table name is not a plain identifier "
                              "(letters, digits and _ only)")


def test_table_name_with_trailing_newline_is_rejected(tmp_path) -> None:
    path = write(tmp_path, one_table('"patient\\n"', GOOD_TABLE))
    error_of(path)


@pytest.mark.parametrize("key, value, shown", [
    ("primary_key", "'Pat Num'", "'Pat Num'"),
    ("primary_key", "[PatNum, 'x;y']", "'x;y'"),
    ("incremental_columns", "[PatNum, \"Date`TStamp\"]", "'Date`TStamp'"),
])
def test_column_name_must_be_plain(tmp_path, key: str, value: str, shown: str) -> None:
    body = {"primary_key": "PatNum", "incremental_columns": "[PatNum]", "primary_incremental_column": "PatNum"}
    body[key] = value
    path = write(tmp_path, one_table("patient", "\n".join(f"{k}: {v}" for k, v in body.items())))
    assert error_of(path) == f"{path}: table 'patient': {key}: {shown} is not a plain identifier"


def test_primary_incremental_column_must_be_plain(tmp_path) -> None:
    path = write(tmp_path, one_table("patient", "primary_key: PatNum\nincremental_columns: [PatNum]\n"
                                                "primary_incremental_column: 'Date TStamp'"))
    assert error_of(path) == (f"{path}: table 'patient': primary_incremental_column: expected a column name or "
                              "none, got 'Date TStamp'")


def test_column_list_of_wrong_shape(tmp_path) -> None:
    path = write(tmp_path, one_table("patient", "primary_key: {a: 1}\nprimary_incremental_column: PatNum"))
    assert error_of(path).splitlines() == [
        f"{path}: table 'patient': primary_key: expected a column name or a list of column names, got {{'a': 1}}",
        f"{path}: table 'patient': primary_key: must name at least one column",
    ]


def test_missing_primary_key(tmp_path) -> None:
    path = write(tmp_path, one_table("patient", "incremental_columns: [PatNum]\nprimary_incremental_column: PatNum"))
    assert error_of(path) == f"{path}: table 'patient': primary_key: missing (the column(s) rows are upserted by)"


def test_empty_primary_key(tmp_path) -> None:
    path = write(tmp_path, one_table("patient", "primary_key: []\nprimary_incremental_column: PatNum"))
    assert error_of(path) == f"{path}: table 'patient': primary_key: must name at least one column"


@pytest.mark.parametrize("strategy", ["incremental", "incremental_chunked"])
def test_incremental_fallback_needs_incremental_columns(tmp_path, strategy: str) -> None:
    path = write(tmp_path, one_table("appointment", f"primary_key: AptNum\nprimary_incremental_column: none\n"
                                                    f"extraction_strategy: {strategy}"))
    assert error_of(path) == (f"{path}: table 'appointment': incremental_columns: an incremental table with "
                              "primary_incremental_column none needs at least one incremental column")


def test_unknown_delete_detection(tmp_path) -> None:
    path = write(tmp_path, one_table("patient", GOOD_TABLE + "delete_detection: soft\n"))
    assert error_of(path) == (f"{path}: table 'patient': delete_detection: expected one of none, reconcile, deletedobject, "
                              "got 'soft'")


def test_table_settings_must_be_a_mapping(tmp_path) -> None:
    path = write(tmp_path, "tables:\n  patient: [a, b]\n")
    assert error_of(path) == f"{path}: table 'patient': expected a mapping of settings, got list"


def test_every_problem_is_reported_at_once(tmp_path) -> None:
    path = write(tmp_path, """
        metadata: {anything: goes}
        tables:
          patient:
            primary_key: PatNum
            incremental_columns: [PatNum]
            primary_incremental_column: PatNum
            extraction_strategy: sometimes
            batch_size: -1
          "a;b":
            primary_key: Id
            primary_incremental_column: Id
          appointment:
            primary_incremental_column: none
          claimproc:
            primary_key: ClaimProcNum
            incremental_columns: ["Sec DateTEdit"]
            primary_incremental_column: ClaimProcNum
            batch_size: many
          ok:
            primary_key: Id
            primary_incremental_column: Id
    """)
    lines = error_of(path).splitlines()
    assert lines == [
        f"{path}: table 'patient': extraction_strategy: expected one of full_table, incremental, "
        "incremental_chunked, got 'sometimes'",
        f"{path}: table 'patient': batch_size: expected a positive integer, got -1",
        f"{path}: table 'a;b': the table name is not a plain identifier (letters, digits and _ only)",
        f"{path}: table 'appointment': primary_key: missing (the column(s) rows are upserted by)",
        f"{path}: table 'appointment': incremental_columns: an incremental table with primary_incremental_column "
        "none needs at least one incremental column",
        f"{path}: table 'claimproc': batch_size: expected a positive integer, got 'many'",
        f"{path}: table 'claimproc': incremental_columns: 'Sec DateTEdit' is not a plain identifier",
    ]
    assert len(lines) == 7


def test_config_error_exit_code() -> None:
    assert ConfigError.exit_code == 2
    assert issubclass(ConfigError, EtlError) and EtlError.exit_code == 1


def test_raised_config_error_carries_exit_code_2(tmp_path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "tables: {}\n"))
    assert info.value.exit_code == 2
    assert str(info.value) == f"{tmp_path / 'tables.yml'}: 'tables:' is empty"


def test_table_configured_twice_is_reported(tmp_path) -> None:
    path = write(tmp_path, """
        tables:
          patient:
            primary_key: PatNum
            primary_incremental_column: DateTStamp
          patient:
            primary_key: PatNum
            extraction_strategy: full_table
    """)
    error_of(path)


def test_column_problems_name_every_configured_column_the_live_table_lacks() -> None:
    from etl.check import column_problems
    from tests import snapshot_cases as sc

    schema = sc.table_schema("patient")
    table = TableConfig(name="patient", primary_key=("PatNumb",), incremental_columns=("PatNum", "DateTStmp", "LName"),
                        primary_incremental_column="DateTStmp", extraction_strategy="incremental", batch_size=10)
    assert column_problems("tables.yml: table 'patient'", table, schema) == [
        "tables.yml: table 'patient': primary_key: column 'PatNumb' does not exist in the source",
        "tables.yml: table 'patient': incremental_columns: column 'DateTStmp' does not exist in the source",
        "tables.yml: table 'patient': primary_incremental_column: column 'DateTStmp' does not exist in the source",
        "tables.yml: table 'patient': incremental_columns: column 'LName' has type varchar(100), which cannot carry "
        "a watermark",
    ]
    good = dataclasses.replace(table, primary_key=("PatNum",), incremental_columns=("PatNum", "DateTStamp"),
                               primary_incremental_column="DateTStamp")
    assert column_problems("x", good, schema, "replica") == []
