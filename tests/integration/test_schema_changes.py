"""Source schema changes against real MariaDB and PostgreSQL: a widening change is applied to the replica and
raw, an added column reaches the rows that existed, a narrowing change fails the table (nothing cut) until
`--full` rebuilds it; values compared row by row, source vs replica vs raw, on both copy paths."""

from __future__ import annotations

import decimal

import pytest

from etl.config import load_config
from etl.runner import run_phases
from tests.integration.engine_helpers import Pipeline
from tests.integration.test_trust import etl

pytestmark = pytest.mark.integration

DDL = """
CREATE TABLE procedurelog (
  ProcNum bigint(20) NOT NULL AUTO_INCREMENT,
  ProcStatus tinyint(4) NOT NULL DEFAULT 0,
  ProcFee decimal(6,2) NOT NULL DEFAULT 0,
  Surf varchar(10) NOT NULL DEFAULT '',
  DateTStamp timestamp NOT NULL DEFAULT '2024-01-01 00:00:00',
  PRIMARY KEY (ProcNum)
) ENGINE=MyISAM
"""
CONFIG = {"incremental_columns": ["ProcNum", "DateTStamp"], "primary_incremental_column": "DateTStamp",
          "primary_key": "ProcNum", "extraction_strategy": "incremental", "batch_size": 4}
STAMP = "2024-05-01 10:00:00"
LATER = "2024-05-02 10:00:00"


@pytest.fixture(params=[False, True], ids=["same-server", "separate-servers"])
def proc(settings, request):
    p = Pipeline(settings, {"procedurelog": CONFIG})
    p.source(DDL)
    for i in range(1, 11):
        p.source("INSERT INTO procedurelog (ProcNum, ProcStatus, ProcFee, Surf, DateTStamp) "
                 "VALUES (%s, %s, %s, %s, %s)", (i, i, 1.25 * i, f"s{i}", STAMP))
    p.run_settings = p.separate_servers() if request.param else p.settings
    p.run(settings=p.run_settings)
    return p


def run(p: Pipeline, *, full: bool = False):
    """One copy + load of procedurelog; the per-phase results, failures included."""
    results = run_phases(p.run_settings, load_config(p.settings.tables_path), ["copy", "load"], None, full=full)
    return {r.phase: r for r in results}


def columns(p: Pipeline) -> list[str]:
    return [r[0] for r in p.source("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
                                   "DATABASE() AND TABLE_NAME = 'procedurelog' ORDER BY ORDINAL_POSITION")]


def normal(value):
    return str(value) if isinstance(value, decimal.Decimal) else value


def assert_three_equal(p: Pipeline) -> None:
    """Every column of every row: the source, the replica and raw hold the same values."""
    names = columns(p)
    listed = ", ".join(names)
    source = [tuple(map(normal, r)) for r in p.source(f"SELECT {listed} FROM procedurelog ORDER BY ProcNum")]
    replica = [tuple(map(normal, r)) for r in p.replica(f"SELECT {listed} FROM procedurelog ORDER BY ProcNum")]
    quoted = ", ".join(f'"{n}"' for n in names)
    raw = [tuple(map(normal, r)) for r in p.raw(f'SELECT {quoted} FROM raw.procedurelog ORDER BY "ProcNum"')]
    assert replica == source
    assert raw == source


def history_notes(p: Pipeline) -> tuple[str, str]:
    copy = p.replica("SELECT notes FROM etl_run_history WHERE phase = 'copy' ORDER BY id DESC LIMIT 1")[0][0]
    load = p.raw("SELECT notes FROM raw.etl_run_history WHERE phase = 'load' ORDER BY id DESC LIMIT 1")[0][0]
    return copy or "", load or ""


def test_an_added_column_reaches_the_rows_that_existed(proc):
    proc.source("ALTER TABLE procedurelog ADD COLUMN UnitQty int NOT NULL DEFAULT 1 AFTER ProcStatus")
    proc.source("INSERT INTO procedurelog (ProcNum, ProcStatus, UnitQty, Surf, DateTStamp) "
                "VALUES (11, 1, 7, 'new', %s)", (LATER,))
    results = run(proc)
    assert all(r.ok for r in results.values()), results
    assert results["copy"].strategy == results["load"].strategy == "full"
    assert proc.raw('SELECT count(*) FROM raw.procedurelog WHERE "UnitQty" = 1') == [(10,)]
    assert_three_equal(proc)
    for notes in history_notes(proc):  # the run history says why the table was read in full
        assert "full refresh: column UnitQty added at the source" in notes
    # and the next run is incremental again
    proc.source("UPDATE procedurelog SET UnitQty = 3, DateTStamp = '2024-05-03 00:00:00' WHERE ProcNum = 2")
    results = run(proc)
    assert results["copy"].strategy == results["load"].strategy == "primary"
    assert_three_equal(proc)


def test_widened_columns_hold_values_that_did_not_fit_before(proc):
    proc.source("ALTER TABLE procedurelog MODIFY Surf varchar(200) NOT NULL DEFAULT '', "
                "MODIFY ProcStatus smallint(6) NOT NULL DEFAULT 0, MODIFY ProcFee decimal(12,4) NOT NULL DEFAULT 0")
    proc.source("UPDATE procedurelog SET Surf = %s, ProcStatus = 300, ProcFee = 12345678.1234, DateTStamp = %s "
                "WHERE ProcNum = 4", ("MODL" * 37 + "DO", LATER))
    results = run(proc)
    assert all(r.ok for r in results.values()), results
    assert results["copy"].strategy == results["load"].strategy == "primary"  # no full refresh needed
    assert proc.replica("SELECT Surf, ProcStatus FROM procedurelog WHERE ProcNum = 4") == (("MODL" * 37 + "DO", 300),)
    assert proc.raw('SELECT length("Surf"), "ProcStatus", "ProcFee" FROM raw.procedurelog WHERE "ProcNum" = 4') == \
        [(150, 300, decimal.Decimal("12345678.1234"))]
    assert proc.raw("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                    "'raw.procedurelog'::regclass AND attname = 'Surf'") == [("character varying(200)",)]
    assert_three_equal(proc)


def test_a_narrowing_change_fails_the_table_until_full_rebuilds_it(proc):
    proc.source("ALTER TABLE procedurelog MODIFY Surf varchar(4) NOT NULL DEFAULT ''")
    proc.source("UPDATE procedurelog SET Surf = 'abcd', DateTStamp = %s WHERE ProcNum = 1", (LATER,))
    before = proc.replica("SELECT * FROM procedurelog ORDER BY ProcNum")
    cli = etl(proc.run_settings, "copy", "procedurelog")
    assert cli.returncode == 1, cli.stderr
    said = [line for line in cli.stderr.splitlines() if "Surf varchar(10) -> varchar(4)" in line]
    assert len(said) == 1 and "etl run --full procedurelog" in said[0], cli.stderr
    copy = run(proc)["copy"]
    assert not copy.ok and copy.error.count("\n") == 0
    assert proc.replica("SELECT * FROM procedurelog ORDER BY ProcNum") == before  # nothing written, nothing cut
    assert proc.replica("SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                        "AND TABLE_NAME = 'procedurelog' AND COLUMN_NAME = 'Surf'") == (("varchar(10)",),)

    results = run(proc, full=True)  # the documented way out
    assert all(r.ok for r in results.values()), results
    assert proc.replica("SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                        "AND TABLE_NAME = 'procedurelog' AND COLUMN_NAME = 'Surf'") == (("varchar(4)",),)
    assert proc.raw("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                    "'raw.procedurelog'::regclass AND attname = 'Surf'") == [("character varying(4)",)]
    assert_three_equal(proc)
    results = run(proc)
    assert all(r.ok for r in results.values()), results


def test_a_change_during_the_run_fails_the_block_instead_of_cutting_a_value(proc, monkeypatch):
    """The source widened after the run compared the definitions (made here by hiding the change from
    that comparison): the value that no longer fits the replica column fails the copy on both paths (a
    strict INSERT ... SELECT; LOAD DATA LOCAL, which only warns, by its warnings), nothing is cut, and
    the next run applies the change and copies the value."""
    from etl.dialects import mysql

    proc.source("ALTER TABLE procedurelog MODIFY Surf varchar(40) NOT NULL DEFAULT ''")
    proc.source("UPDATE procedurelog SET Surf = %s, DateTStamp = %s WHERE ProcNum = 5", ("y" * 40, LATER))
    before = proc.replica("SELECT * FROM procedurelog ORDER BY ProcNum")
    monkeypatch.setattr(mysql, "type_change", lambda old, new: "same")
    copy = run(proc)["copy"]
    assert not copy.ok and ("Data too long" in copy.error or "Data truncated" in copy.error), copy.error
    assert proc.replica("SELECT * FROM procedurelog ORDER BY ProcNum") == before
    monkeypatch.undo()
    results = run(proc)
    assert all(r.ok for r in results.values()), results
    assert_three_equal(proc)


def test_strict_sessions_refuse_a_value_that_does_not_fit(proc):
    """A value the replica column cannot hold (here: the source widened between the drift check and the
    read) fails the statement in the replica session instead of being clamped."""
    from etl.dialects import mysql

    conn = mysql.connect(proc.settings.replica_url, role="replica")
    try:
        with conn.cursor() as cur, pytest.raises(Exception, match="Data too long|Out of range"):
            cur.execute("UPDATE procedurelog SET Surf = %s WHERE ProcNum = 1", ("x" * 11,))
    finally:
        conn.rollback()
        conn.close()
    assert proc.replica("SELECT Surf FROM procedurelog WHERE ProcNum = 1") == (("s1",),)
