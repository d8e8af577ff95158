"""Clean stops: a real SIGTERM/SIGINT to a real `etl run` mid-copy rolls back, cleans up, records, exits."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from etl.config import load_config
from etl.tools.demo import build_demo_source
from etl.verify import verify
from tests.integration.engine_helpers import Pipeline
from tests.integration.test_trust import _env

pytestmark = pytest.mark.integration

TABLES = {
    "procedurelog": {"incremental_columns": ["ProcNum", "DateTStamp"], "primary_incremental_column": "DateTStamp",
                     "primary_key": "ProcNum", "extraction_strategy": "incremental", "batch_size": 200},
    "definition": {"incremental_columns": ["DefNum"], "primary_incremental_column": "DefNum",
                   "primary_key": "DefNum", "extraction_strategy": "full_table"},
}


@pytest.fixture
def demo(settings):
    build_demo_source(settings.source_url, scale=0.005, tables=list(TABLES))
    return Pipeline(settings, TABLES)


def _start(settings, tmp_path, *args):
    ready = tmp_path / "mid-copy"
    env = _env(settings, ETL_SLOW_AT="copy.batch_committed", ETL_SLOW_SECONDS="0.5", ETL_SLOW_READY=str(ready),
               ETL_RETRIES="3")
    proc = subprocess.Popen([sys.executable, "-m", "etl", "run", "--jobs", "1", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never reached the copy's first block"
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_copy_stops_cleanly_and_the_next_run_converges(demo, tmp_path, signum, code):
    settings = demo.separate_servers()  # the block path: LOAD DATA files, per-block commits
    first = subprocess.run([sys.executable, "-m", "etl", "run", "procedurelog", "definition"],
                           env=_env(settings), capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    before = demo.replica("SELECT COUNT(*) FROM etl_run_history WHERE phase = 'copy'")[0][0]

    proc = _start(settings, tmp_path, "--full")  # a full refresh of a populated table: a shadow table
    assert demo.replica("SHOW TABLES LIKE 'procedurelog__etl_new'") != ()
    folders = glob.glob(os.path.join(tempfile.gettempdir(), f"etl-copy-{proc.pid}-*"))
    assert folders  # the block folder exists mid-copy ...
    started = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - started < 10, "the stop took too long"
    assert proc.returncode == code, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"interrupted by {signal.Signals(signum).name}") and "procedurelog" in last, err
    assert "Traceback" not in err

    assert demo.replica("SHOW TABLES LIKE 'procedurelog\\_\\_etl%'") == ()  # no shadow left
    assert not [f for f in folders if os.path.exists(f)]                     # ... and is gone after
    history = demo.replica("SELECT table_name, status, error FROM etl_run_history WHERE phase = 'copy' "
                           "ORDER BY id")[before:]
    assert [(t, s) for t, s, _ in history] == [("procedurelog", "interrupted")], history
    assert demo.status("copy", "procedurelog")[0] == "interrupted"
    # Nothing started after the signal: definition (next in line) has no new history, load never ran.
    assert demo.raw("SELECT COUNT(*) FROM raw.etl_run_history WHERE status = 'interrupted'") == [(0,)]

    rerun = subprocess.run([sys.executable, "-m", "etl", "run"], env=_env(settings), capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    report = verify(demo.settings, load_config(demo.settings.tables_path))
    assert report["ok"] and report["differing_rows"] == 0, report
    assert demo.status("copy", "procedurelog")[0] == "success"


def test_a_second_signal_exits_at_once(demo, tmp_path):
    from etl.dialects.mysql import sweep_block_folders

    settings = demo.separate_servers()
    proc = _start(settings, tmp_path)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and "second SIGTERM" in err, err
    # No cleanup happened: the next start sweeps the dead run's block folder.
    stale = glob.glob(os.path.join(tempfile.gettempdir(), f"etl-copy-{proc.pid}-*"))
    assert stale and sorted(sweep_block_folders()) == sorted(stale)


def test_a_long_server_side_statement_is_ended_on_the_server(demo, tmp_path):
    """Same servers: one INSERT ... SELECT moves the rows. A READ lock on the replica table holds it (a
    deterministic stand-in for a long statement); SIGTERM must end it on the server within seconds."""
    from tests.conftest import mysql_conn

    settings = demo.settings
    first = subprocess.run([sys.executable, "-m", "etl", "copy", "procedurelog"], env=_env(settings),
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    demo.source("UPDATE procedurelog SET ProcFee = ProcFee + 1, DateTStamp = UTC_TIMESTAMP() - INTERVAL 10 MINUTE "
                "WHERE ProcNum % 5 = 0")
    holder = mysql_conn(settings.replica_url)
    watcher = mysql_conn(settings.replica_url)
    try:
        with holder.cursor() as cur:
            cur.execute("LOCK TABLES procedurelog READ")
        proc = subprocess.Popen([sys.executable, "-m", "etl", "copy", "procedurelog"], env=_env(settings),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while True:
            with watcher.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'INSERT INTO%%' "
                            "AND DB = %s", (settings.replica_url.database,))
                if cur.fetchone()[0]:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert time.monotonic() - started < 10, "the statement was not ended"
    finally:
        with holder.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        holder.close()
        watcher.close()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("interrupted by SIGTERM"), err
    status = demo.replica("SELECT status, error FROM etl_run_history WHERE table_name = 'procedurelog' "
                          "ORDER BY id DESC LIMIT 1")[0]
    assert status[0] == "interrupted" and "SIGTERM" in status[1], status
    rerun = subprocess.run([sys.executable, "-m", "etl", "copy"], env=_env(settings), capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert demo.source("SELECT COUNT(*), SUM(ProcFee) FROM procedurelog") == \
        demo.replica("SELECT COUNT(*), SUM(ProcFee) FROM procedurelog")
