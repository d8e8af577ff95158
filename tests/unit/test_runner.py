"""etl/runner.py and the transform phase's reading of dbt's results, with fakes: retries of transient faults,
a busy lock, failures kept to their table, the transform step's results, which models read which table,
and what becomes of each table after a dbt build."""

from __future__ import annotations

from types import SimpleNamespace

import pymysql
import pytest

from etl import locks, runner
from etl.errors import ConnectionFailed, SchemaError
from etl.phases import transform
from etl.phases.transform import TableWindow
from tests import snapshot_cases as sc

SETTINGS = sc.SETTINGS
TABLE = sc.demo_config()["patient"]


@pytest.mark.parametrize("exc, transient", [
    (ConnectionFailed("cannot connect to the replica database ..."), True),
    (pymysql.err.OperationalError(2013, "Lost connection"), True),
    (pymysql.err.OperationalError(1213, "Deadlock found"), True),
    (pymysql.err.ProgrammingError(1146, "no such table"), False),
    (SchemaError("column 'X' does not exist"), False),
    (ValueError("boom"), False),
])
def test_is_transient_asks_every_dialect(exc: BaseException, transient: bool) -> None:
    assert runner.is_transient(exc) is transient


@pytest.fixture
def phase(monkeypatch):
    """A fake copy phase answering from a script of outcomes (exceptions are raised); no sleeping."""
    script: list = []
    calls: list = []

    def fake(settings, table, run_id, **options):
        calls.append(options)
        item = script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    monkeypatch.setitem(runner.PHASES, "copy", fake)
    monkeypatch.setattr(runner.stop, "requested_during", lambda seconds: calls.append(("slept", seconds)) and False)
    return script, calls


def test_a_transient_fault_is_retried_with_backoff(phase) -> None:
    script, calls = phase
    script += [pymysql.err.OperationalError(2013, "Lost connection"), ConnectionFailed("down"),
               runner._Summary("primary", 10, 4)]
    result = runner.run_table(SETTINGS, "copy", TABLE, "run", full=True)
    assert (result.ok, result.strategy, result.rows_read, result.rows_written, result.attempts) == \
        (True, "primary", 10, 4, 3)
    assert [c for c in calls if isinstance(c, tuple)] == [("slept", 1.0), ("slept", 2.0)]
    assert calls[0] == {"full": True, "strategy": None}


def test_retries_stop_after_the_setting_and_the_error_is_the_tables(phase) -> None:
    script, calls = phase
    script += [pymysql.err.OperationalError(2013, "Lost connection to mysql+pymysql://etl:pw@db/x")] * 4
    result = runner.run_table(SETTINGS, "copy", TABLE, "run")
    assert not result.ok and result.attempts == SETTINGS.retries + 1
    assert "***" in result.error and "pw" not in result.error  # never a password


def test_a_busy_lock_skips_the_table_without_retrying(phase) -> None:
    script, calls = phase
    script.append(locks.LockBusy("copy patient: skipped, another run holds its lock"))
    result = runner.run_table(SETTINGS, "copy", TABLE, "run")
    assert (result.ok, result.attempts, result.error) == (False, 1, "copy patient: skipped, another run holds its lock")


def test_a_permanent_error_fails_the_table_at_once(phase) -> None:
    script, calls = phase
    script.append(SchemaError("table 'patient' does not exist in the source database x"))
    result = runner.run_table(SETTINGS, "copy", TABLE, "run")
    assert (result.ok, result.attempts) == (False, 1) and result.error.startswith("table 'patient'")


def test_a_lock_for_an_unknown_phase_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="no lock for phase 'reconcile'"):
        with locks.table_lock(SETTINGS, "reconcile", "patient"):
            pass


def test_the_transform_step_reports_every_table_and_never_raises(monkeypatch) -> None:
    config = SimpleNamespace(tables={"patient": TABLE, "definition": sc.demo_config()["definition"],
                                     "commlog": sc.demo_config()["commlog"]})
    selected = list(config.tables.values())
    earlier = [runner.TableResult("load", "commlog", False, error="boom")]

    class Lock:
        def __init__(self, *args):
            self.args = args

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    taken = []
    monkeypatch.setattr(runner, "table_lock", lambda *args: taken.append(args[1:]) or Lock())
    windows = [TableWindow("patient", "DateTStamp", status="success", rows=5, seconds=0.5, strategy="incremental"),
               TableWindow("definition", "DefNum", status="failed", error="test unique failed", strategy="full")]
    asked = []
    monkeypatch.setattr(transform, "transform_tables",
                        lambda settings, cfg, names, full, run_id: asked.append(names) or windows)
    results = runner.transform_step(SETTINGS, config, selected, earlier, run_id="r")
    assert taken == [("transform", transform.LOCK_NAME)]
    assert asked == [["patient", "definition"]]  # commlog's load failed: not transformed
    by = {r.table: r for r in results}
    assert (by["commlog"].ok, by["commlog"].error) == (False, "skipped: load failed")
    assert (by["patient"].ok, by["patient"].rows_written, by["patient"].strategy) == (True, 5, "incremental")
    assert (by["definition"].ok, by["definition"].error) == (False, "test unique failed")

    def broken(*args, **kwargs):
        raise ConnectionFailed("cannot connect to the analytics database postgresql://etl:secret@pg/x")

    monkeypatch.setattr(transform, "transform_tables", broken)
    failed = runner.transform_step(SETTINGS, config, selected, [], run_id="r")
    assert [r.ok for r in failed] == [False] * 3 and all("secret" not in r.error for r in failed)


# ---------------------------------------------------------------- dbt's results -> each table's status

def _node(name, kind="model", parents=()):
    return SimpleNamespace(name=name, unique_id=f"{kind}.p.{name}", resource_type=kind,
                           depends_on=SimpleNamespace(nodes=list(parents)))


def _manifest():
    sources = {f"source.p.opendental.{t}": SimpleNamespace(schema="raw", identifier=t)
               for t in ("patient", "procedurelog")}
    sources["source.p.other.patient"] = SimpleNamespace(schema="elsewhere", identifier="patient")
    nodes = {n.unique_id: n for n in (
        _node("stg_patient", parents=["source.p.opendental.patient"]),
        _node("stg_procedurelog", parents=["source.p.opendental.procedurelog"]),
        _node("fct_visits", parents=["model.p.stg_patient", "model.p.stg_procedurelog"]),
        _node("unique_stg_patient_pat_num", "test", ["model.p.stg_patient"]),
        _node("odd", parents=["source.p.other.patient"]),
    )}
    return SimpleNamespace(nodes=nodes, sources=sources)


def _result(node_id, status, message=None, seconds=0.25):
    manifest = _manifest()
    return SimpleNamespace(node=manifest.nodes[node_id], status=status, message=message, execution_time=seconds)


def test_models_are_found_by_the_raw_sources_they_read() -> None:
    readers = transform._models_by_table(_manifest(), "raw", {"patient", "procedurelog", "commlog"})
    assert readers == {"patient": {"stg_patient"}, "procedurelog": {"stg_procedurelog"}}
    ancestors = transform._ancestor_tables(_manifest(), "raw")
    assert ancestors["model.p.fct_visits"] == {"patient", "procedurelog"}
    assert ancestors["model.p.odd"] == set()


def _windows():
    return [TableWindow("patient", "DateTStamp", models=["stg_patient"]),
            TableWindow("procedurelog", "DateTStamp", models=["stg_procedurelog"])]


def test_a_table_fails_when_its_model_a_descendant_or_a_test_fails() -> None:
    windows = _windows()
    outcome = SimpleNamespace(exception=None, result=SimpleNamespace(results=[
        _result("model.p.stg_patient", "success"), _result("model.p.stg_procedurelog", "success", seconds=1.5),
        _result("model.p.fct_visits", "error", "relation does not exist\nLINE 1: select\nmore\nand more"),
        _result("test.p.unique_stg_patient_pat_num", "fail", "Got 2 results, configured to fail if != 0"),
    ]))
    transform._apply_results(windows, _manifest(), outcome, "raw")
    patient, procedures = windows
    assert patient.status == "failed" and procedures.status == "failed"  # fct_visits reads both
    assert patient.error == ("model fct_visits: relation does not exist LINE 1: select more; "
                             "test unique_stg_patient_pat_num: Got 2 results, configured to fail if != 0")
    assert procedures.seconds == 1.5


def test_a_table_succeeds_when_everything_it_feeds_succeeds_and_is_skipped_when_dbt_skipped_it() -> None:
    windows = _windows()
    outcome = SimpleNamespace(exception=None, result=SimpleNamespace(results=[
        _result("model.p.stg_patient", "success"), _result("model.p.stg_procedurelog", "skipped"),
    ]))
    transform._apply_results(windows, _manifest(), outcome, "raw")
    assert [w.status for w in windows] == ["success", "skipped"]
    assert windows[1].reason == "dbt skipped stg_procedurelog (skipped)"


def test_a_model_dbt_did_not_report_fails_its_table() -> None:
    windows = _windows()
    outcome = SimpleNamespace(exception=None, result=SimpleNamespace(results=[_result("model.p.stg_patient", "success")]))
    transform._apply_results(windows, _manifest(), outcome, "raw")
    assert (windows[1].status, windows[1].error) == ("failed", "dbt reported no result for stg_procedurelog")


def test_a_build_without_results_fails_every_chosen_table_with_dbts_reason() -> None:
    windows = _windows()
    transform._apply_results(windows, _manifest(), SimpleNamespace(exception=RuntimeError("Compilation Error\n in x"),
                                                                   result=None), "raw")
    assert [w.status for w in windows] == ["failed", "failed"]
    assert windows[0].error == "dbt build failed: Compilation Error in x"


def test_no_retry_starts_after_a_stop_request(phase) -> None:
    from etl import stop

    script, calls = phase
    script += [pymysql.err.OperationalError(2013, "Lost connection"), runner._Summary("primary", 10, 4)]
    stop.request()
    try:
        result = runner.run_table(SETTINGS, "copy", TABLE, "run")
    finally:
        stop.reset()
    assert (result.ok, result.attempts) == (False, 1) and not [c for c in calls if isinstance(c, tuple)]


def test_an_interrupted_table_is_not_retried(phase) -> None:
    from etl import stop

    script, calls = phase
    script += [stop.Interrupted("interrupted by SIGTERM"), runner._Summary("primary", 10, 4)]
    result = runner.run_table(SETTINGS, "copy", TABLE, "run")
    assert (result.ok, result.attempts, result.error) == (False, 1, "interrupted by SIGTERM")


def test_stale_block_folders_of_dead_processes_are_swept(tmp_path) -> None:
    import os
    import subprocess

    from etl.dialects import mysql

    child = subprocess.Popen(["true"])
    child.wait()
    stale = tmp_path / f"{mysql.BLOCK_FOLDER_PREFIX}{child.pid}-abc"
    live = tmp_path / f"{mysql.BLOCK_FOLDER_PREFIX}{os.getpid()}-def"
    other = tmp_path / "etl-copy-notapid"
    for folder in (stale, live, other):
        folder.mkdir()
        (folder / "block.txt").write_bytes(b"rows")
    assert mysql.sweep_block_folders(str(tmp_path)) == [str(stale)]
    assert not stale.exists() and live.exists() and other.exists()


def test_block_files_are_private_and_removed_on_every_exit(tmp_path, monkeypatch) -> None:
    import os
    import stat
    import tempfile

    from etl.dialects import mysql

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    old = os.umask(0o022)
    try:
        with pytest.raises(RuntimeError):
            with mysql.block_files() as write:
                path = write(b"1\tpatient")
                assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
                assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
                raise RuntimeError("a failure mid-copy")
    finally:
        os.umask(old)
    assert list(tmp_path.iterdir()) == []


def test_upsert_counts_say_changed_not_affected() -> None:
    """MySQL counts an updated row twice in an upsert's affected rows; its info line says how many."""
    from types import SimpleNamespace

    from etl.executor import _rows_changed

    def cursor(rowcount, message):
        return SimpleNamespace(rowcount=rowcount, _result=SimpleNamespace(message=message))

    assert _rows_changed(cursor(400, b"&Records: 400  Duplicates: 200  Warnings: 0")) == (200, 400)  # 200 updated
    assert _rows_changed(cursor(0, b"&Records: 400  Duplicates: 0  Warnings: 0")) == (0, 400)      # re-read only
    assert _rows_changed(cursor(5, b"&Records: 7  Duplicates: 1  Warnings: 0")) == (4, 7)          # 3 new, 1 updated
    assert _rows_changed(cursor(3, b"Records: 3  Deleted: 0  Skipped: 0  Warnings: 0")) == (3, None)  # LOAD DATA
    assert _rows_changed(SimpleNamespace(rowcount=-1)) == (0, None)


def test_json_log_lines_are_one_object_each_with_secrets_masked() -> None:
    import json
    import logging

    from etl.cli import _JsonFormatter

    record = logging.LogRecord("etl.runner", logging.ERROR, __file__, 1, "cannot reach %s",
                               ("mysql+pymysql://etl:secret@db/opendental",), None)
    line = _JsonFormatter().format(record)
    entry = json.loads(line)
    assert "\n" not in line and entry["level"] == "error" and entry["logger"] == "etl.runner"
    assert "secret" not in line and "***" in entry["message"] and entry["time"].endswith("+00:00")
