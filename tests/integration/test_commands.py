"""The operator's commands against real databases: init-tracking, status, check-config, render, migrate."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.integration.engine_helpers import Pipeline
from tests.integration.test_trust import etl

pytestmark = pytest.mark.integration

TABLES = {
    "patient": {"incremental_columns": ["PatNum", "DateTStamp"], "primary_incremental_column": "DateTStamp",
                "primary_key": "PatNum", "batch_size": 100},
    "appointment": {"incremental_columns": ["DateTStamp", "AptDateTime"], "primary_incremental_column": "none",
                    "primary_key": "AptNum"},
}


def _copy_and_load(p: Pipeline) -> None:
    # Not `etl run`: its transform step runs the shipped dbt models, written for the demo tables' columns.
    for phase in ("copy", "load"):
        result = etl(p.settings, phase)
        assert result.returncode == 0, result.stderr


@pytest.fixture
def pipeline(settings):
    p = Pipeline(settings, TABLES)
    p.source("CREATE TABLE patient (PatNum bigint NOT NULL, LName varchar(100) NOT NULL, Notes text, "
             "DateTStamp timestamp NOT NULL DEFAULT '2024-01-01 00:00:00', PRIMARY KEY (PatNum)) ENGINE=MyISAM")
    p.source("CREATE TABLE appointment (AptNum bigint NOT NULL, AptDateTime datetime NOT NULL, "
             "DateTStamp timestamp NOT NULL DEFAULT '2024-01-01 00:00:00', PRIMARY KEY (AptNum)) ENGINE=MyISAM")
    p.source("INSERT INTO patient (PatNum, LName, DateTStamp) SELECT seq, CONCAT('p', seq), "
             "'2024-02-01 00:00:00' + INTERVAL seq SECOND FROM seq_1_to_30")
    p.source("INSERT INTO appointment SELECT seq, '2024-03-01', '2024-03-01' FROM seq_1_to_5")
    return p


def test_init_tracking_is_idempotent_and_reports_unconfigured_rows(pipeline):
    first = etl(pipeline.settings, "init-tracking")
    assert first.returncode == 0
    assert "copy       created 2, existed 0" in first.stdout and "transform  created 2, existed 0" in first.stdout
    pipeline.replica("INSERT INTO etl_copy_status (table_name) VALUES ('retired_table')")
    second = etl(pipeline.settings, "init-tracking")
    assert "copy       created 0, existed 2" in second.stdout and "load       created 0, existed 2" in second.stdout
    assert "no longer configured (kept): retired_table" in second.stdout
    assert pipeline.replica("SELECT copy_status, primary_column_name FROM etl_copy_status "
                            "WHERE table_name = 'patient'") == (("pending", "DateTStamp"),)
    assert pipeline.raw("SELECT transformation_status FROM raw.etl_transform_status WHERE table_name = 'appointment'") \
        == [("pending",)]


def test_status_json_reports_every_phase_and_the_coverage(pipeline):
    etl(pipeline.settings, "init-tracking")
    _copy_and_load(pipeline)
    result = etl(pipeline.settings, "status", "--json")
    assert result.returncode == 0
    report = json.loads(result.stdout)
    patient = next(t for t in report["tables"] if t["table"] == "patient")
    assert patient["copy"]["status"] == "success" and patient["copy"]["last_primary_value"] == "2024-02-01 00:00:30"
    assert patient["load"]["rows"] == 30 and patient["load"]["primary_column_name"] == "DateTStamp"
    assert patient["transform"]["status"] == "pending"
    appointment = next(t for t in report["tables"] if t["table"] == "appointment")
    assert appointment["primary_incremental_column"] is None and appointment["load"]["last_primary_value"] is None
    assert report["coverage"] == {"with_watermark": 1, "with_primary_column": 1}
    text = etl(pipeline.settings, "status").stdout
    assert "tables with a primary incremental column whose tracking holds a value: 1 of 1" in text


def test_check_config_reports_every_problem_on_its_own_line(pipeline):
    tables = {
        "patient": dict(TABLES["patient"], incremental_columns=["PatNum", "Gone"], primary_incremental_column="LName"),
        "appointment": TABLES["appointment"],
        "nosuch": TABLES["patient"],
    }
    pipeline.settings.tables_path.write_text(yaml.safe_dump({"tables": tables}, sort_keys=False))
    result = etl(pipeline.settings, "check-config")
    assert result.returncode == 2
    path = pipeline.settings.tables_path
    assert result.stdout.splitlines() == [
        f"{path}: table 'patient': incremental_columns: column 'Gone' does not exist in the source",
        f"{path}: table 'patient': primary_incremental_column: column 'LName' has type varchar(100); "
        "expected an integer, date, datetime or timestamp",
        f"{path}: table 'nosuch': does not exist in the source database {pipeline.settings.source_url.database}",
    ]


def test_config_errors_exit_2_and_write_nothing(pipeline):
    pipeline.settings.tables_path.write_text(
        "tables:\n  patient:\n    primary_key: PatNum\n    batch_size: -5\n    extraction_strategy: sometimes\n")
    result = etl(pipeline.settings, "run")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 3 and all(str(pipeline.settings.tables_path) in l and "'patient'" in l for l in lines)
    assert pipeline.replica("SELECT COUNT(*) FROM etl_run_history") == ((0,),)


def test_render_prints_plan_and_statements_with_binds_and_changes_nothing(pipeline):
    _copy_and_load(pipeline)
    result = etl(pipeline.settings, "render", "load", "patient")
    assert result.returncode == 0
    assert "-- load patient: strategy primary (stored watermark)" in result.stdout
    assert "-- situation: target populated; stage and upsert" in result.stdout
    assert ("-- mysql/load_select (first block)  (binds: :load_id, :long_escaped, :long_row, :m0_floor, :m0_hi, "
            ":u0, :u1, :w0_hi, :w0_lo)") in result.stdout
    assert "[upsert] run on the analytics; its rows count as rows_written\n-- postgres/load_upsert" in result.stdout
    assert "IS DISTINCT FROM" in result.stdout
    fallback = etl(pipeline.settings, "render", "copy", "appointment", "--strategy", "full")
    assert "strategy full (--strategy requested)" in fallback.stdout
    before = pipeline.raw("SELECT count(*) FROM raw.etl_run_history")
    assert etl(pipeline.settings, "render", "copy", "patient").returncode == 0
    assert pipeline.raw("SELECT count(*) FROM raw.etl_run_history") == before


def _nothing_written(p: Pipeline) -> None:
    """No tracking row, no run history, no replica or raw copy of a configured table."""
    for table in ("etl_copy_status", "etl_run_history"):
        assert p.replica(f"SELECT COUNT(*) FROM {table}") == ((0,),), table
    for table in ("etl_load_status", "etl_run_history"):
        assert p.raw(f"SELECT COUNT(*) FROM raw.{table}") == [(0,)], table
    assert p.replica("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                     "AND TABLE_NAME IN ('patient', 'appointment')") == ((0,),)
    assert p.raw("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'raw' "
                 "AND table_name IN ('patient', 'appointment')") == [(0,)]


@pytest.mark.parametrize("command", ["run", "copy", "verify", "reconcile"])
def test_configured_column_missing_at_the_source_stops_every_command_before_it_writes(pipeline, command):
    tables = {"patient": dict(TABLES["patient"], incremental_columns=["PatNum", "DateTStamp", "DateTStmp"]),
              "appointment": TABLES["appointment"]}
    pipeline.settings.tables_path.write_text(yaml.safe_dump({"tables": tables}, sort_keys=False))
    result = etl(pipeline.settings, command)
    assert result.returncode == 2, result.stderr
    path = pipeline.settings.tables_path
    assert result.stderr.strip().splitlines()[-1].endswith(
        f"{path}: table 'patient': incremental_columns: column 'DateTStmp' does not exist in the source")
    assert "Traceback" not in result.stderr
    _nothing_written(pipeline)


def test_configured_column_missing_in_the_replica_stops_a_load_before_it_writes(pipeline):
    _copy_and_load(pipeline)
    pipeline.replica("ALTER TABLE patient DROP COLUMN DateTStamp")
    before = pipeline.raw("SELECT * FROM raw.patient ORDER BY 1")
    marks = pipeline.raw("SELECT count(*) FROM raw.etl_run_history")[0][0]
    result = etl(pipeline.settings, "load", "patient")
    assert result.returncode == 2
    problem = "table 'patient': primary_incremental_column: column 'DateTStamp' does not exist in the replica"
    assert problem in result.stderr
    # no data moved, but the table that loaded before is recorded failed: its status is not a stale success
    assert pipeline.raw("SELECT * FROM raw.patient ORDER BY 1") == before
    assert pipeline.raw("SELECT count(*) FROM raw.etl_run_history")[0][0] == marks + 1
    (status, error), = pipeline.raw("SELECT status, error FROM raw.etl_run_history ORDER BY id DESC LIMIT 1")
    assert status == "failed" and problem in error
    assert pipeline.raw("SELECT load_status FROM raw.etl_load_status WHERE table_name = 'patient'") == [("failed",)]
    assert "failed" in etl(pipeline.settings, "status").stdout


@pytest.mark.parametrize("key, suggestion", [("delete_detecton", "delete_detection"),
                                             ("extraction_stratgy", "extraction_strategy")])
def test_misspelt_setting_stops_a_run_and_names_the_setting_it_meant(pipeline, key, suggestion):
    tables = {"patient": dict(TABLES["patient"], **{key: "full_table" if "strat" in key else "reconcile"})}
    pipeline.settings.tables_path.write_text(yaml.safe_dump({"tables": tables}, sort_keys=False))
    result = etl(pipeline.settings, "run")
    assert result.returncode == 2
    assert f"table 'patient': unknown key '{key}'; did you mean '{suggestion}'?" in result.stderr
    _nothing_written(pipeline)
