"""Copy and load against real MariaDB and PostgreSQL: strategies, watermarks, boundaries, failures."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from etl.errors import EtlError
from tests.integration.engine_helpers import Pipeline

pytestmark = pytest.mark.integration

PROC_DDL = """
CREATE TABLE procedurelog (
  ProcNum bigint(20) NOT NULL AUTO_INCREMENT,
  PatNum bigint(20) NOT NULL,
  ProcFee double NOT NULL DEFAULT 0,
  ProcStatus tinyint(3) unsigned NOT NULL DEFAULT 0,
  Note varchar(255) NOT NULL DEFAULT '',
  DateTStamp timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp(),
  PRIMARY KEY (ProcNum)
) ENGINE=MyISAM
"""
PROC_CONFIG = {"incremental_columns": ["ProcNum", "DateTStamp"], "primary_incremental_column": "DateTStamp",
               "primary_key": "ProcNum", "extraction_strategy": "incremental", "batch_size": 4}
OLD = "2024-05-01 10:00:00"


def _seed_procedures(p: Pipeline, n: int = 10, stamp: str = OLD):
    p.source(PROC_DDL)
    for i in range(1, n + 1):
        p.source("INSERT INTO procedurelog (ProcNum, PatNum, ProcFee, ProcStatus, Note, DateTStamp) "
                 "VALUES (%s, %s, %s, 1, 'tp', %s)", (i, 100 + i, 10.5 * i, stamp))


def _raw_rows(p: Pipeline, table="procedurelog", key='"ProcNum"'):
    return p.raw(f'SELECT * FROM raw.{table} ORDER BY {key}')


@pytest.fixture
def proc(settings):
    p = Pipeline(settings, {"procedurelog": PROC_CONFIG})
    _seed_procedures(p)
    return p


@pytest.mark.parametrize("streaming", [False, True], ids=["same-server", "separate-servers"])
def test_timestamp_primary_first_full_then_incremental(proc, streaming):
    settings = proc.separate_servers() if streaming else proc.settings
    first = proc.run(settings=settings)
    assert first[("copy", "procedurelog")].strategy == "full"
    assert first[("load", "procedurelog")].strategy == "full"
    assert len(_raw_rows(proc)) == 10
    assert proc.status("copy", "procedurelog")[:3] == ("success", "DateTStamp", OLD)
    assert proc.status("load", "procedurelog")[:3] == ("success", "DateTStamp", OLD)

    proc.source("UPDATE procedurelog SET ProcStatus = 2, ProcFee = 99.99, DateTStamp = '2024-05-02 08:00:00' WHERE ProcNum = 3")
    second = proc.run(settings=settings)
    assert second[("copy", "procedurelog")].strategy == "primary"
    assert second[("load", "procedurelog")].rows_written == 1
    row = proc.raw('SELECT "ProcStatus", "ProcFee", "DateTStamp" FROM raw.procedurelog WHERE "ProcNum" = 3')[0]
    assert row == (2, 99.99, dt.datetime(2024, 5, 2, 8, 0))
    assert proc.status("load", "procedurelog")[2] == "2024-05-02 08:00:00"


def test_rerun_without_changes_writes_nothing(proc):
    proc.run()
    before = proc.raw('SELECT "_etl_load_id", xmin::text FROM raw.procedurelog ORDER BY "ProcNum"')
    again = proc.run()
    assert again[("copy", "procedurelog")].rows_written == 0
    assert again[("load", "procedurelog")].rows_written == 0
    assert proc.raw('SELECT "_etl_load_id", xmin::text FROM raw.procedurelog ORDER BY "ProcNum"') == before


def test_row_written_in_the_watermark_second_after_a_run_arrives(proc):
    proc.run()
    # Another row gets exactly the stored watermark's timestamp after the run (a late writer, a clock
    # that set an explicit value): the inclusive lower bound must still pick it up.
    proc.source("UPDATE procedurelog SET Note = 'same second', DateTStamp = %s WHERE ProcNum = 7", (OLD,))
    proc.run()
    assert proc.raw('SELECT "Note" FROM raw.procedurelog WHERE "ProcNum" = 7') == [("same second",)]


def test_open_second_is_left_for_the_next_run(proc):
    proc.run()
    proc.source("INSERT INTO procedurelog (ProcNum, PatNum, Note, DateTStamp) VALUES (11, 1, 'now', UTC_TIMESTAMP())")
    proc.run()
    stored = proc.status("copy", "procedurelog")[2]
    now_second = proc.source("SELECT DateTStamp FROM procedurelog WHERE ProcNum = 11")[0][0]
    # Whatever the timing, the watermark never reaches a second that was still open when it was read...
    assert dt.datetime.fromisoformat(stored) <= now_second
    time.sleep(1.1)
    proc.run()
    # ...and the row arrives on the next run.
    assert proc.raw('SELECT "Note" FROM raw.procedurelog WHERE "ProcNum" = 11') == [("now",)]


def test_integer_watermark_nine_then_ten(settings):
    p = Pipeline(settings, {"securitylog": {
        "incremental_columns": ["SecurityLogNum"], "primary_incremental_column": "SecurityLogNum",
        "primary_key": "SecurityLogNum", "extraction_strategy": "incremental_chunked", "batch_size": 3}})
    p.source("CREATE TABLE securitylog (SecurityLogNum bigint NOT NULL AUTO_INCREMENT, LogText text NOT NULL, "
             "PRIMARY KEY (SecurityLogNum)) ENGINE=MyISAM")
    for i in range(1, 10):
        p.source("INSERT INTO securitylog VALUES (%s, %s)", (i, f"entry {i}"))
    p.run()
    assert p.status("copy", "securitylog")[2] == "9"
    for i in (10, 11):
        p.source("INSERT INTO securitylog VALUES (%s, %s)", (i, f"entry {i}"))
    result = p.run(settings=p.separate_servers())
    # Compared as text, '9' > '10' would make the second run read nothing; as integers it reads 9, 10, 11.
    assert result[("copy", "securitylog")].strategy == "primary"
    assert result[("copy", "securitylog")].rows_read == 3
    assert result[("copy", "securitylog")].rows_written == 2
    assert p.status("copy", "securitylog")[2] == "11"
    assert p.status("load", "securitylog")[2] == "11"
    assert p.raw('SELECT count(*) FROM raw.securitylog') == [(11,)]


def test_fallback_picks_up_a_change_in_a_secondary_column_only(settings):
    p = Pipeline(settings, {"appointment": {
        "incremental_columns": ["DateTStamp", "AptDateTime"], "primary_incremental_column": "none",
        "primary_key": "AptNum", "batch_size": 2}})
    p.source("CREATE TABLE appointment (AptNum bigint NOT NULL, Note varchar(50) NOT NULL, "
             "AptDateTime datetime NOT NULL, DateTStamp timestamp NOT NULL DEFAULT '2024-01-01 00:00:00', "
             "PRIMARY KEY (AptNum)) ENGINE=MyISAM")
    for i in range(1, 6):
        p.source("INSERT INTO appointment VALUES (%s, 'x', %s, '2024-01-01 00:00:00')", (i, f"2024-02-0{i} 09:00:00"))
    first = p.run(settings=p.separate_servers())
    assert first[("copy", "appointment")].strategy == "full"
    # Only AptDateTime moves (DateTStamp is pinned): the OR over incremental columns must still see it.
    p.source("UPDATE appointment SET Note = 'moved', AptDateTime = '2024-03-01 09:00:00', "
             "DateTStamp = '2024-01-01 00:00:00' WHERE AptNum = 2")
    second = p.run(settings=p.separate_servers())
    assert second[("copy", "appointment")].strategy == "fallback"
    assert p.raw('SELECT "Note" FROM raw.appointment WHERE "AptNum" = 2') == [("moved",)]
    watermarks = dict(p.raw("SELECT column_name, last_value FROM raw.etl_load_column_status "
                            "WHERE table_name = 'appointment'"))
    assert watermarks == {"DateTStamp": "2024-01-01 00:00:00", "AptDateTime": "2024-03-01 09:00:00"}
    assert p.status("load", "appointment")[1:3] == (None, None)


def test_full_table_delete_at_source_disappears_from_raw(settings):
    p = Pipeline(settings, {"definition": {"incremental_columns": ["DefNum"], "primary_incremental_column": "DefNum",
                                           "primary_key": "DefNum", "extraction_strategy": "full_table"}})
    p.source("CREATE TABLE definition (DefNum bigint NOT NULL, ItemName varchar(255) NOT NULL, PRIMARY KEY (DefNum)) ENGINE=MyISAM")
    for i in range(1, 6):
        p.source("INSERT INTO definition VALUES (%s, %s)", (i, f"def {i}"))
    p.run()
    p.source("DELETE FROM definition WHERE DefNum IN (2, 4)")
    p.run()
    assert p.replica("SELECT DefNum FROM definition ORDER BY DefNum") == ((1,), (3,), (5,))
    assert p.raw('SELECT "DefNum" FROM raw.definition ORDER BY 1') == [(1,), (3,), (5,)]
    p.source("DELETE FROM definition WHERE DefNum = 5")
    p.run(settings=p.separate_servers())
    assert p.raw('SELECT "DefNum" FROM raw.definition ORDER BY 1') == [(1,), (3,)]


def test_changed_primary_column_forces_a_full_refresh(proc):
    proc.run()
    proc.source("ALTER TABLE procedurelog ADD COLUMN SecDateTEdit datetime NOT NULL DEFAULT '2024-06-01 00:00:00'")
    config = dict(PROC_CONFIG, primary_incremental_column="SecDateTEdit",
                  incremental_columns=["ProcNum", "SecDateTEdit"])
    proc.settings.tables_path.write_text(__import__("yaml").safe_dump({"tables": {"procedurelog": config}}))
    result = proc.run()
    assert result[("copy", "procedurelog")].strategy == "full"
    assert result[("load", "procedurelog")].strategy == "full"
    assert proc.status("load", "procedurelog")[1:3] == ("SecDateTEdit", "2024-06-01 00:00:00")
    # The source column that appeared was added to the replica and to raw (schema drift).
    assert proc.raw('SELECT count(*) FROM raw.procedurelog WHERE "SecDateTEdit" = %s',
                    (dt.datetime(2024, 6, 1),)) == [(10,)]
    notes = proc.raw("SELECT notes FROM raw.etl_run_history WHERE phase = 'load' ORDER BY id DESC LIMIT 1")[0][0]
    assert "SecDateTEdit" in notes


def test_failure_mid_load_leaves_data_and_tracking_unchanged(proc, monkeypatch):
    proc.run()
    before_rows = _raw_rows(proc)
    before_status = proc.status("load", "procedurelog")
    proc.source("UPDATE procedurelog SET ProcFee = 1, DateTStamp = '2024-05-03 00:00:00' WHERE ProcNum = 1")
    proc.run(["copy"])

    import etl.tracking

    def boom(*args, **kwargs):
        raise RuntimeError("injected failure after the upsert, before tracking")

    monkeypatch.setattr(etl.tracking.Writer, "write", boom)
    from etl.config import load_config
    from etl.runner import run_phases
    results = run_phases(proc.settings, load_config(proc.settings.tables_path), ["load"])
    assert not results[0].ok and "injected failure" in results[0].error
    assert _raw_rows(proc) == before_rows
    status = proc.status("load", "procedurelog")
    assert status[0] == "failed" and status[1:3] == before_status[1:3]
    history = proc.raw("SELECT status, error FROM raw.etl_run_history ORDER BY id DESC LIMIT 1")[0]
    assert history[0] == "failed" and "injected failure" in history[1]
    monkeypatch.undo()
    proc.run(["load"])
    assert proc.raw('SELECT "ProcFee" FROM raw.procedurelog WHERE "ProcNum" = 1') == [(1.0,)]


def test_load_never_reads_past_the_copy_watermark(proc):
    proc.run()
    # A row reaches the replica without the copy phase recording it (as if the copy crashed after
    # writing it): the load must not take it, nor move its watermark past the copy's.
    proc.replica("UPDATE procedurelog SET Note = 'uncommitted copy', DateTStamp = '2024-07-01 00:00:00' WHERE ProcNum = 2")
    proc.run(["load"])
    assert proc.raw('SELECT "Note" FROM raw.procedurelog WHERE "ProcNum" = 2') == [("tp",)]
    assert proc.status("load", "procedurelog")[2] == OLD


def test_unknown_table_fails_that_table_and_the_others_go_on(settings):
    p = Pipeline(settings, {"procedurelog": PROC_CONFIG, "nosuchtable": dict(PROC_CONFIG)})
    _seed_procedures(p, 3)
    from etl.config import load_config
    from etl.runner import run_phases
    results = run_phases(settings, load_config(settings.tables_path), ["copy", "load"])
    by = {(r.phase, r.table): r for r in results}
    assert by[("copy", "procedurelog")].ok and by[("load", "procedurelog")].ok
    assert not by[("copy", "nosuchtable")].ok
    assert "nosuchtable" in by[("copy", "nosuchtable")].error


def test_row_committed_late_by_an_older_transaction_still_arrives(settings):
    """InnoDB source: a transaction stamps a row, commits later; a newer row commits before it."""
    p = Pipeline(settings, {"procedurelog": PROC_CONFIG})
    p.source(PROC_DDL.replace("ENGINE=MyISAM", "ENGINE=InnoDB"))
    p.source("INSERT INTO procedurelog (ProcNum, PatNum, Note, DateTStamp) SELECT seq, seq, 'tp', %s "
             "FROM seq_1_to_5", (OLD,))
    p.run()
    from tests.conftest import mysql_conn
    late = mysql_conn(p.settings.source_url)
    late.autocommit(False)
    try:
        with late.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.execute("START TRANSACTION")
            time.sleep(1.1)
            cur.execute("UPDATE procedurelog SET Note = 'late' WHERE ProcNum = 1")  # stamped now, not committed
        time.sleep(1.1)
        p.source("UPDATE procedurelog SET Note = 'early' WHERE ProcNum = 2")  # newer stamp, committed first
        time.sleep(1.1)
        p.run()
        # The open writer holds the horizon back: the newer row is not read past the late one's second.
        assert p.raw('SELECT "Note" FROM raw.procedurelog WHERE "ProcNum" = 2') == [("tp",)]
        late.commit()
    finally:
        late.close()
    time.sleep(1.1)
    p.run()
    assert p.raw('SELECT "ProcNum", "Note" FROM raw.procedurelog WHERE "ProcNum" IN (1, 2) ORDER BY 1') == \
        [(1, "late"), (2, "early")]
