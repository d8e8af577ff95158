"""The DAG factory parsed by real Airflow (the airflow extra; skipped without it), in a process of its own whose
AIRFLOW_HOME is a temporary folder: no import errors, one DAG and one verify DAG per clinic, the expected task
graph, pools, retries and trigger rules; a bad clinics.yml is an import error with its one-line message."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from etl import PROJECT_ROOT
from tests.airflow_driver import MARK

pytestmark = [
    pytest.mark.airflow,
    pytest.mark.skipif(importlib.util.find_spec("airflow") is None,
                       reason="the airflow extra is not installed (make install-airflow)"),
]

CLINICS = """
    defaults:
      replica: {env: REPLICA_URL}
      retries: 4
    source_servers:
      hosted: {pool_slots: 1}
    warehouses:
      main: {analytics: {env: ANALYTICS_URL}}
    clinics:
      north: {source: {env: NORTH_URL}, tables: tables.yml}
      south: {source: {airflow_connection: od_south}, source_server: hosted, tables: tables.yml,
              schedule: "@hourly", verify_schedule: null}
"""


def airflow_env(tmp_path, clinics_text: str) -> dict[str, str]:
    (tmp_path / "dags").mkdir(exist_ok=True)
    shutil.copy(PROJECT_ROOT / "etl" / "airflow" / "example_dag.py", tmp_path / "dags" / "opendental_clinics.py")
    (tmp_path / "clinics.yml").write_text(textwrap.dedent(clinics_text), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"AIRFLOW_HOME": str(tmp_path / "home"), "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "ETL_CLINICS": str(tmp_path / "clinics.yml")})
    return env


def driver(env: dict[str, str], *args: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "tests.airflow_driver", *args], capture_output=True, text=True,
                            env=env, cwd=PROJECT_ROOT, timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.startswith(MARK)]
    assert result.returncode == 0 and lines, result.stderr[-3000:]
    return json.loads(lines[-1][len(MARK):])


def test_one_dag_and_one_verify_dag_per_clinic_with_the_expected_graph(tmp_path):
    parsed = driver(airflow_env(tmp_path, CLINICS), "graph")
    assert parsed["import_errors"] == {}
    dags = parsed["dags"]
    assert set(dags) == {"opendental_north", "opendental_north_verify", "opendental_south", "opendental_south_verify"}
    north = dags["opendental_north"]["tasks"]
    # (discover_check, when the CLI has it, is checked below and in the next test)
    upstream = {task: set(t["upstream"]) - {"discover_check"} for task, t in north.items() if task != "discover_check"}
    assert upstream == {
        "preflight": set(),
        "copy_deletedobject": {"preflight"},
        "load_deletedobject": {"copy_deletedobject"},
        "deletedobject_done": {"load_deletedobject"},
        "table.copy": {"preflight", "deletedobject_done"},
        "table.load": {"preflight", "table.copy"},
        "table.delete_detection": {"preflight", "table.load"},
        "tables_done": {"table.delete_detection"},
        "transform": {"preflight", "tables_done"},
        "failures": {"preflight", "copy_deletedobject", "load_deletedobject", "table.copy", "table.load",
                     "table.delete_detection", "transform"},
    }
    # the tables are mapped (dynamic task mapping over preflight's list), the rest is not
    assert {task for task, t in north.items() if t["mapped"]} == {"table.copy", "table.load", "table.delete_detection"}
    rules = {task: t["trigger_rule"].rsplit(".", 1)[-1] for task, t in north.items()}
    assert rules["deletedobject_done"] == rules["tables_done"] == "ALL_DONE"
    assert rules["failures"] == "ONE_FAILED" and rules["transform"] == rules["table.copy"] == "ALL_SUCCESS"
    pools = {task: t["pool"] for task, t in north.items() if task != "discover_check"}
    assert {t for t, p in pools.items() if p == "etl_source_north"} == {
        "preflight", "copy_deletedobject", "table.copy", "table.delete_detection"}
    assert {t for t, p in pools.items() if p == "etl_warehouse_main"} == {"load_deletedobject", "table.load", "transform"}
    assert north["table.copy"]["retries"] == 4 and north["failures"]["retries"] == 0
    assert dags["opendental_north"]["params"] == ["full", "tables"]
    assert dags["opendental_north"]["schedule"] == "0 2 * * *"
    assert dags["opendental_north_verify"]["schedule"] == "0 6 * * 0"
    assert dags["opendental_south"]["schedule"] == "@hourly" and dags["opendental_south_verify"]["schedule"] is None
    assert dags["opendental_south"]["tasks"]["table.copy"]["pool"] == "etl_source_hosted"
    assert dags["opendental_south_verify"]["tasks"] == {"verify": {
        "upstream": [], "pool": "etl_source_hosted", "trigger_rule": "TriggerRule.ALL_SUCCESS", "retries": 0,
        "mapped": False}}
    # the warning task exists exactly when the CLI has `etl discover` (the hook wires itself)
    parser = __import__("etl.cli", fromlist=["build_parser"]).build_parser()
    commands = next(a for a in parser._subparsers._group_actions if a.dest == "command").choices  # noqa: SLF001
    assert ("discover_check" in north) == ("discover" in commands)


def test_discover_check_hook_is_a_warning_that_blocks_nothing(tmp_path):
    north = driver(airflow_env(tmp_path, CLINICS), "graph", "--discover")["dags"]["opendental_north"]["tasks"]
    assert north["discover_check"]["upstream"] == ["preflight"] and north["discover_check"]["retries"] == 0
    assert "discover_check" in north["tables_done"]["upstream"]        # tables_done waits for it, whatever it says
    assert "discover_check" not in north["failures"]["upstream"]      # ... and its failure does not fail the run


def test_a_bad_clinics_yml_is_an_import_error_with_its_one_line(tmp_path):
    parsed = driver(airflow_env(tmp_path, CLINICS.replace("pool_slots: 1", "pool_slots: none")), "graph")
    assert parsed["dags"] == {}
    (error,) = parsed["import_errors"].values()
    assert f"{tmp_path}/clinics.yml: source_servers: 'hosted': pool_slots: expected a positive integer, got 'none'" \
        in error
