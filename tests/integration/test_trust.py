"""Trust: crash safety (real SIGKILL), verify, reconcile, locks, retries and clear errors on bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml

from etl.config import load_config
from etl.tools.demo import build_demo_source
from etl.migrate import migrate
from etl.settings import mask_url
from etl.runner import reconcile
from etl.verify import verify
from tests.integration.engine_helpers import Pipeline

pytestmark = pytest.mark.integration

TABLES = {
    "procedurelog": {"incremental_columns": ["ProcNum", "DateTStamp"], "primary_incremental_column": "DateTStamp",
                     "primary_key": "ProcNum", "extraction_strategy": "incremental", "batch_size": 500},
    "appointment": {"incremental_columns": ["AptNum", "DateTStamp", "AptDateTime"],
                    "primary_incremental_column": "none", "primary_key": "AptNum", "batch_size": 300},
    "definition": {"incremental_columns": ["DefNum"], "primary_incremental_column": "DefNum",
                   "primary_key": "DefNum", "extraction_strategy": "full_table"},
}


def _env(settings, **extra) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "ETL_SOURCE_URL": settings.source_url.render_as_string(hide_password=False),
        "ETL_REPLICA_URL": settings.replica_url.render_as_string(hide_password=False),
        "ETL_ANALYTICS_URL": settings.analytics_url.render_as_string(hide_password=False),
        "ETL_RAW_SCHEMA": settings.raw_schema,
        "ETL_TABLES": str(settings.tables_path),
        "ETL_RETRIES": "0",
    })
    env.update(extra)
    return env


def etl(settings, *args, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "etl", *args], env=_env(settings, **extra),
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def demo(settings):
    build_demo_source(settings.source_url, scale=0.01, tables=list(TABLES))
    return Pipeline(settings, TABLES)


def _assert_no_drift(settings):
    report = verify(settings, load_config(settings.tables_path))
    assert report["ok"] and report["differing_rows"] == 0, report


def _change_source(p: Pipeline, round_: int):
    """Updates, inserts and a secondary-column-only change, stamped after every stored watermark and in
    seconds already closed (as OpenDental's ON UPDATE CURRENT_TIMESTAMP columns would be)."""
    stamp = f"UTC_TIMESTAMP() - INTERVAL {30 - round_} MINUTE"
    p.source(f"UPDATE procedurelog SET ProcFee = ProcFee + {round_}, DateTStamp = {stamp} WHERE ProcNum % 7 = {round_}")
    p.source(f"INSERT INTO procedurelog (PatNum, ProcDate, ProcFee, DateTStamp) "
             f"SELECT PatNum, ProcDate, 1.5, {stamp} FROM procedurelog LIMIT 50")
    p.source(f"UPDATE appointment SET Note = 'round {round_}', AptDateTime = {stamp}, DateTStamp = DateTStamp "
             f"WHERE AptNum % 11 = {round_}")


@pytest.mark.parametrize("point,separate", [
    ("copy.batch_committed:3", True),     # during the read: some batches and checkpoints committed
    ("copy.before_tracking", False),      # server-side copy done, tracking not written
    ("load.during_copy:2", False),        # during COPY into PostgreSQL
    ("load.before_tracking", False),      # data upserted, tracking not yet
    ("load.before_commit", True),         # data and tracking written, not committed
])
def test_sigkill_at_any_point_then_rerun_converges(demo, point, separate):
    settings = demo.separate_servers() if separate else demo.settings
    assert etl(settings, "run").returncode == 0
    for round_ in (1, 2):
        _change_source(demo, round_)
        killed = etl(settings, "run", "--jobs", "1", ETL_CRASH_AT=point)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        rerun = etl(settings, "run")
        assert rerun.returncode == 0, rerun.stderr
        _assert_no_drift(demo.settings)
    # Tracking is consistent with the data: no table is left 'running', watermarks equal the data's.
    assert demo.replica("SELECT COUNT(*) FROM etl_copy_status WHERE copy_status <> 'success'") == ((0,),)
    top = demo.raw('SELECT max("DateTStamp") FROM raw.procedurelog WHERE "DateTStamp" < now()')[0][0]
    assert demo.status("load", "procedurelog")[2] == top.isoformat(sep=" ")


def test_verify_names_missing_extra_and_different_keys_and_reconcile_heals_deletes(demo):
    demo.run()
    _assert_no_drift(demo.settings)
    demo.source("DELETE FROM procedurelog WHERE ProcNum IN (3, 4000)")
    demo.replica("UPDATE procedurelog SET ProcFee = -1 WHERE ProcNum = 10")
    demo.raw('DELETE FROM raw.appointment WHERE "AptNum" = 5')
    result = etl(demo.settings, "verify", "--json")
    assert result.returncode == 1
    report = yaml.safe_load(result.stdout)
    by = {t["table"]: t for t in report["tables"]}
    proc = by["procedurelog"]["pairs"]
    assert proc["source->replica"]["extra"] == 2 and proc["source->replica"]["examples"]["extra"] == [3, 4000]
    assert proc["source->replica"]["different"] == 1 and proc["source->replica"]["examples"]["different"] == [10]
    assert proc["replica->raw"]["different"] == 1
    assert by["appointment"]["pairs"]["replica->raw"]["examples"]["missing"] == [5]
    assert by["definition"]["status"] == "ok"
    assert report["differing_rows"] == 5

    deleted = reconcile(demo.settings, load_config(demo.settings.tables_path), ["procedurelog"])
    assert deleted == {"procedurelog": {"replica": 2, "raw": 2}}
    assert demo.raw('SELECT count(*) FROM raw.procedurelog WHERE "ProcNum" IN (3, 4000)') == [(0,)]
    history = demo.raw("SELECT rows_written FROM raw.etl_run_history WHERE phase = 'reconcile'")
    assert history == [(2,)]


def test_delete_detection_setting_makes_run_reconcile(demo):
    tables = dict(TABLES, procedurelog=dict(TABLES["procedurelog"], delete_detection="reconcile"))
    demo.settings.tables_path.write_text(yaml.safe_dump({"tables": tables}))
    demo.run()
    demo.source("DELETE FROM procedurelog WHERE ProcNum BETWEEN 100 AND 119")
    demo.run()
    _assert_no_drift(demo.settings)


def test_second_run_waits_for_the_lock_then_skips_the_table(demo):
    demo.run()
    holder = __import__("tests.conftest", fromlist=["mysql_conn"]).mysql_conn(demo.settings.replica_url)
    with holder.cursor() as cur:
        cur.execute("SELECT GET_LOCK(%s, 0)", (f"etl:{demo.settings.replica_url.database}:copy:procedurelog",))
    try:
        started = time.monotonic()
        result = etl(demo.settings, "copy", ETL_LOCK_TIMEOUT="2")
        waited = time.monotonic() - started
    finally:
        holder.close()
    assert result.returncode == 1
    assert "copy procedurelog: skipped, another run holds its lock (waited 2 s" in result.stderr + result.stdout
    assert waited >= 2
    # The other tables were copied meanwhile.
    assert "2 table runs succeeded (" in result.stdout and "), 1 failed" in result.stdout
    assert "procedurelog: copy procedurelog" not in result.stdout  # the skip names its table once


def test_advisory_lock_serialises_loads_of_one_table(demo):
    demo.run()
    from tests.conftest import pg_conn
    holder = pg_conn(demo.settings.analytics_url)
    from etl.locks import lock_name
    with holder.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))",
                    (lock_name("load", "appointment", demo.settings.raw_schema),))
    release = threading.Timer(3.0, holder.close)
    started = time.monotonic()
    release.start()
    result = etl(demo.settings, "load", "appointment", ETL_LOCK_TIMEOUT="30")
    waited = time.monotonic() - started
    release.join()
    assert result.returncode == 0, result.stderr  # waited for the holder, then ran
    assert waited >= 3.0  # the lock it waited for is the one its name says


def test_database_down_is_one_line_naming_it_without_password(demo):
    url = demo.settings.source_url.set(port=1, password="s3cret")
    result = etl(demo.settings, "run", ETL_SOURCE_URL=url.render_as_string(hide_password=False))
    assert result.returncode == 1
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot connect to the source database")
    assert "s3cret" not in result.stderr and mask_url(url) in lines[0]
    assert "Traceback" not in result.stderr


def test_wrong_password_and_missing_database(demo):
    url = demo.settings.replica_url.set(username="etl_nobody", password="wrong")
    result = etl(demo.settings, "status", ETL_REPLICA_URL=url.render_as_string(hide_password=False))
    assert result.returncode == 1 and "wrong" not in result.stderr
    assert "cannot connect to the replica database" in result.stderr
    missing = demo.settings.analytics_url.set(database="etl_no_such_db")
    result = etl(demo.settings, "load", ETL_ANALYTICS_URL=missing.render_as_string(hide_password=False))
    assert result.returncode == 1 and "etl_no_such_db" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("text,expected", [
    ("tables:\n  patient:\n    primary_key: [PatNum\n", "malformed YAML"),
    ("tables:\n  'pat;ient':\n    primary_key: PatNum\n", "the table name is not a plain identifier"),
    ("tables:\n  nosuch:\n    primary_key: X\n    incremental_columns: [X]\n    primary_incremental_column: X\n",
     None),
])
def test_bad_input_writes_nothing_and_names_the_culprit(demo, text, expected):
    demo.settings.tables_path.write_text(text)
    result = etl(demo.settings, "run")
    if expected:
        assert result.returncode == 2 and expected in result.stderr and str(demo.settings.tables_path) in result.stderr
    else:  # a configured table missing at the source: that table fails by name, exit 1
        assert result.returncode == 1 and "'nosuch' does not exist in the source" in result.stdout
    assert demo.replica("SELECT COUNT(*) FROM etl_run_history WHERE status = 'success'") == ((0,),)


def test_unknown_column_is_named_by_check_config(demo):
    tables = {"procedurelog": dict(TABLES["procedurelog"], incremental_columns=["ProcNum", "NoSuchCol"])}
    demo.settings.tables_path.write_text(yaml.safe_dump({"tables": tables}))
    result = etl(demo.settings, "check-config")
    assert result.returncode == 2
    assert "table 'procedurelog': incremental_columns: column 'NoSuchCol' does not exist in the source" in result.stdout


def test_old_tracking_schema_asks_for_migrate(demo):
    from etl.migrate import downgrade
    downgrade(demo.settings, "0003_column_status")
    result = etl(demo.settings, "run")
    assert result.returncode == 1 and "run `etl migrate`" in result.stderr
    migrate(demo.settings)
    assert etl(demo.settings, "run").returncode == 0


def test_deletedobject_log_is_an_incremental_delete_feed(settings):
    tables = {
        "deletedobject": {"incremental_columns": ["DeletedObjectNum"], "primary_incremental_column": "DeletedObjectNum",
                          "primary_key": "DeletedObjectNum"},
        "appointment": {"incremental_columns": ["DateTStamp"], "primary_incremental_column": "DateTStamp",
                        "primary_key": "AptNum", "delete_detection": "deletedobject", "deleted_object_type": 0},
    }
    p = Pipeline(settings, tables)
    p.source("CREATE TABLE deletedobject (DeletedObjectNum bigint NOT NULL AUTO_INCREMENT, ObjectNum bigint NOT NULL, "
             "ObjectType int NOT NULL, DateTStamp timestamp NOT NULL DEFAULT '2024-01-01 00:00:00', "
             "PRIMARY KEY (DeletedObjectNum)) ENGINE=MyISAM")
    p.source("CREATE TABLE appointment (AptNum bigint NOT NULL, DateTStamp timestamp NOT NULL DEFAULT "
             "'2024-01-01 00:00:00', PRIMARY KEY (AptNum)) ENGINE=MyISAM")
    p.source("INSERT INTO appointment (AptNum) SELECT seq FROM seq_1_to_20")
    p.run()
    # Deleted at the source and logged; one logged key of another type, one logged key re-created.
    p.source("DELETE FROM appointment WHERE AptNum IN (3, 4, 5)")
    p.source("INSERT INTO deletedobject (ObjectNum, ObjectType) VALUES (3, 0), (4, 0), (6, 1), (7, 0)")
    p.run()
    assert p.replica("SELECT AptNum FROM appointment WHERE AptNum BETWEEN 3 AND 7") == ((5,), (6,), (7,))
    assert p.raw('SELECT "AptNum" FROM raw.appointment WHERE "AptNum" BETWEEN 3 AND 7 ORDER BY 1') == [(5,), (6,), (7,)]
    assert p.raw("SELECT last_value FROM raw.etl_load_column_status WHERE table_name = 'appointment'") == [("4",)]
    # Key 5 was never logged: the key comparison (reconcile) is the fallback for what the log misses.
    p.source("INSERT INTO deletedobject (ObjectNum, ObjectType) VALUES (5, 0)")
    p.run()
    assert p.raw('SELECT count(*) FROM raw.appointment') == [(17,)]
    assert p.raw('SELECT count(*) FROM raw.appointment WHERE "AptNum" = 5') == [(0,)]


def test_dropped_connection_is_retried_then_reported_clearly(demo):
    settings = demo.separate_servers()
    assert etl(settings, "run").returncode == 0
    _change_source(demo, 1)
    retried = etl(settings, "copy", "procedurelog", ETL_DROP_CONNECTION_AT="copy.batch_committed:1", ETL_RETRIES="2")
    assert retried.returncode == 0, retried.stderr
    assert "copy procedurelog: transient fault" in retried.stderr and "attempt 2 of 3" in retried.stderr
    finish = etl(settings, "run")  # the other tables' changes
    assert finish.returncode == 0, finish.stderr
    _assert_no_drift(demo.settings)

    _change_source(demo, 2)
    failed = etl(settings, "copy", "procedurelog", ETL_DROP_CONNECTION_AT="copy.batch_committed:1", ETL_RETRIES="0")
    assert failed.returncode == 1
    assert "copy procedurelog:" in failed.stdout and "Lost connection" in failed.stdout
    assert demo.status("copy", "procedurelog")[0] == "failed"
