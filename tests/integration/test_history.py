"""What happened, later: every failure is recorded (also before any data moves), `etl history` reads the
run history of all phases back, `etl status` shows the last success and the last failure."""

from __future__ import annotations

import json

import pytest

from etl.tools.demo import build_demo_source
from tests.integration.engine_helpers import Pipeline
from tests.integration.test_trust import etl

pytestmark = pytest.mark.integration

TABLES = {
    "definition": {"incremental_columns": ["DefNum"], "primary_incremental_column": "DefNum",
                   "primary_key": "DefNum", "extraction_strategy": "full_table"},
    "provider": {"incremental_columns": ["ProvNum"], "primary_incremental_column": "ProvNum",
                 "primary_key": "ProvNum", "extraction_strategy": "incremental"},
}


@pytest.fixture
def demo(settings):
    build_demo_source(settings.source_url, scale=0.01, tables=list(TABLES))
    return Pipeline(settings, TABLES)


def test_a_table_gone_at_the_source_is_recorded_failed_and_status_is_never_stale(demo):
    first = etl(demo.settings, "run", "--no-reconcile")
    assert first.returncode == 0, first.stderr
    demo.source("DROP TABLE provider")
    second = etl(demo.settings, "run", "--no-reconcile")
    assert second.returncode == 1

    # The status row says failed, and the run history has the failure with its error.
    assert demo.status("copy", "provider")[0] == "failed"
    failed = demo.replica("SELECT status, error FROM etl_run_history WHERE table_name = 'provider' "
                          "AND phase = 'copy' ORDER BY id DESC LIMIT 1")[0]
    assert failed[0] == "failed" and "does not exist" in failed[1]

    report = json.loads(etl(demo.settings, "status", "--json").stdout)
    provider = next(t for t in report["tables"] if t["table"] == "provider")["copy"]
    assert provider["status"] == "failed" and "does not exist" in provider["last_error"]
    assert provider["last_success"].endswith(" UTC") and provider["last_failure"] >= provider["last_success"]
    definition = next(t for t in report["tables"] if t["table"] == "definition")
    assert definition["copy"]["last_failure"] is None
    # A full_table table is rewritten each run: total = the rows of both runs, last run = the second's.
    rows = demo.source("SELECT COUNT(*) FROM definition")[0][0]
    assert (definition["copy"]["rows_last_run"], definition["copy"]["rows_total"]) == (rows, 2 * rows)

    text = etl(demo.settings, "status").stdout
    assert "does not exist" in text and " UTC" in text

    history = etl(demo.settings, "history", "provider", "--json")
    assert history.returncode == 0, history.stderr
    runs = json.loads(history.stdout)
    assert [(r["phase"], r["status"]) for r in runs if r["phase"] == "copy"] == [("copy", "failed"), ("copy", "success")]
    assert {r["phase"] for r in runs} >= {"copy", "load"} and all(r["table"] == "provider" for r in runs)
    only_load = json.loads(etl(demo.settings, "history", "--phase", "load", "--since", "1h", "--json").stdout)
    assert only_load and {r["phase"] for r in only_load} == {"load"}
    assert json.loads(etl(demo.settings, "history", "--since", "2999-01-01", "--json").stdout) == []
    bad = etl(demo.settings, "history", "--since", "yesterday")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "error: provider" not in etl(demo.settings, "history").stdout


def test_output_an_operator_can_live_with(demo):
    first = etl(demo.settings, "run", "--no-reconcile")
    assert first.returncode == 0, first.stderr
    again = etl(demo.settings, "run", "--no-reconcile")
    assert again.returncode == 0, again.stderr
    lines = (again.stdout + again.stderr).strip().splitlines()
    assert len(lines) <= 8, lines  # a no-change run: a short summary
    assert "6 table runs succeeded (" in again.stdout

    quiet = etl(demo.settings, "--quiet", "run", "--no-reconcile")
    assert quiet.returncode == 0 and quiet.stderr.strip() == "", quiet.stderr
    assert quiet.stdout.strip().splitlines() == [l for l in quiet.stdout.strip().splitlines() if "succeeded" in l]

    demo.source("UPDATE provider SET Abbr = CONCAT(Abbr, 'x') WHERE ProvNum <= 3")
    logged = etl(demo.settings, "run", "--no-reconcile", "--full", ETL_LOG_FORMAT="json")
    assert logged.returncode == 0, logged.stderr
    records = [json.loads(line) for line in logged.stderr.strip().splitlines()]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert records[0]["time"].endswith("+00:00")

    migrated = etl(demo.settings, "migrate")
    lines = migrated.stdout.strip().splitlines() + migrated.stderr.strip().splitlines()
    assert len(lines) == len(set(lines)) == 2, lines  # each line once
