"""The fast paths of issue 6 against real servers: block reads (and a block the server cuts short), the
row-by-row fallback of the separate-servers copy, a crowded watermark second, small full_table lookups."""

from __future__ import annotations

import pytest

import etl.blocks
import etl.phases.copy
import etl.plan
from tests.integration.engine_helpers import Pipeline

pytestmark = pytest.mark.integration

DDL = """
CREATE TABLE procedurelog (
  ProcNum bigint(20) NOT NULL,
  Note text,
  Code varchar(20) CHARACTER SET latin1 NOT NULL DEFAULT '',
  Blob1 varbinary(8),
  ProcDate date NOT NULL DEFAULT '0001-01-01',
  DateTStamp timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp(),
  PRIMARY KEY (ProcNum)
) ENGINE=MyISAM DEFAULT CHARSET=utf8mb4
"""
CONFIG = {"incremental_columns": ["DateTStamp"], "primary_incremental_column": "DateTStamp",
          "primary_key": "ProcNum", "extraction_strategy": "incremental", "batch_size": 500}
STAMP = "2024-05-01 10:00:00"


@pytest.fixture
def proc(settings):
    p = Pipeline(settings, {"procedurelog": CONFIG})
    p.source(DDL)
    p.source("INSERT INTO procedurelog (ProcNum, Note, Code, Blob1, ProcDate, DateTStamp) "
             "SELECT seq, IF(MOD(seq, 7) = 0, CONCAT('tab\\there ', seq, '\\nline\\\\'), REPEAT('n', MOD(seq, 300))), "
             "IF(MOD(seq, 5) = 0, CONCAT('caf', CHAR(233)), ''), IF(MOD(seq, 3) = 0, UNHEX('00FF0A5C09'), NULL), "
             "IF(MOD(seq, 11) = 0, '0000-00-00', '2024-01-02'), %s FROM seq_1_to_3000", (STAMP,))
    return p


def _source(p):
    return p.source("SELECT ProcNum, Note, Code, Blob1, CAST(ProcDate AS CHAR), DateTStamp FROM procedurelog "
                    "ORDER BY ProcNum")


def _replica(p):
    return p.replica("SELECT ProcNum, Note, Code, Blob1, CAST(ProcDate AS CHAR), DateTStamp FROM procedurelog "
                     "ORDER BY ProcNum")


def test_blocks_cut_short_by_the_server_are_read_again_smaller(proc, monkeypatch):
    # The server cuts a GROUP_CONCAT at group_concat_max_len: make that 64 kB, far below a 500-row block.
    original = etl.blocks.prepare_session

    def small_blocks(conn, setup, limit):
        original(conn, setup, limit)
        with conn.cursor() as cur:
            cur.execute("SET SESSION group_concat_max_len = 65536")
            cur.execute(limit.plain())  # the limit the reader checks blocks against, now 64 kB
            return int(cur.fetchone()[0])

    monkeypatch.setattr(etl.blocks, "prepare_session", small_blocks)
    result = proc.run(settings=proc.separate_servers())
    assert result[("copy", "procedurelog")].rows_read == 3000
    assert result[("load", "procedurelog")].rows_read == 3000
    assert _replica(proc) == _source(proc)
    assert proc.raw('SELECT count(*), count(*) FILTER (WHERE "Note" LIKE %s) FROM raw.procedurelog',
                    ("tab\there%",)) == [(3000, 428)]


def test_separate_servers_without_load_data_local_copies_row_by_row(proc, monkeypatch):
    monkeypatch.setattr(etl.phases.copy, "infile_enabled", lambda replica: False)
    separate = proc.separate_servers()
    proc.run(settings=separate)
    assert _replica(proc) == _source(proc)
    proc.source("UPDATE procedurelog SET Note = 'changed', DateTStamp = '2024-05-02 00:00:00' WHERE ProcNum IN (5, 2999)")
    result = proc.run(["copy"], settings=separate)
    assert result[("copy", "procedurelog")].rows_written == 4  # two rows, two affected each (ODKU)
    assert _replica(proc) == _source(proc)


@pytest.mark.parametrize("streaming", [False, True], ids=["same-server", "separate-servers"])
def test_a_crowded_watermark_second_is_not_read_again(proc, streaming):
    settings = proc.separate_servers() if streaming else proc.settings
    assert etl.plan.RESCAN_LIMIT < 3000  # all 3000 rows share one second
    proc.run(settings=settings)
    again = proc.run(settings=settings)
    assert again[("copy", "procedurelog")].rows_read == 0
    assert again[("load", "procedurelog")].rows_read == 0
    # A row that arrives in that second after the run, with a larger key, is still read.
    proc.source("INSERT INTO procedurelog (ProcNum, Note, DateTStamp) VALUES (5000, 'late', %s)", (STAMP,))
    late = proc.run(settings=settings)
    assert late[("load", "procedurelog")].rows_read == 1
    assert proc.raw('SELECT "Note" FROM raw.procedurelog WHERE "ProcNum" = 5000') == [("late",)]
    history = proc.raw("SELECT notes FROM raw.etl_run_history WHERE phase = 'load' ORDER BY id DESC LIMIT 1")
    assert "read past key 3000" in history[0][0]


def test_an_unchanged_small_lookup_is_not_rewritten(settings):
    p = Pipeline(settings, {"definition": {"incremental_columns": ["DefNum"], "primary_incremental_column": "DefNum",
                                           "primary_key": "DefNum", "extraction_strategy": "full_table"}})
    p.source("CREATE TABLE definition (DefNum bigint NOT NULL, ItemName varchar(255), PRIMARY KEY (DefNum)) "
             "ENGINE=MyISAM")
    p.source("INSERT INTO definition SELECT seq, CONCAT('def ', seq) FROM seq_1_to_50")
    p.run()
    before = p.raw('SELECT "DefNum", "_etl_load_id", xmin::text FROM raw.definition ORDER BY 1')
    again = p.run()
    assert again[("load", "definition")].rows_read == 50 and again[("load", "definition")].rows_written == 0
    assert p.raw('SELECT "DefNum", "_etl_load_id", xmin::text FROM raw.definition ORDER BY 1') == before
    p.source("UPDATE definition SET ItemName = NULL WHERE DefNum = 7")
    changed = p.run()
    assert changed[("load", "definition")].rows_written == 50  # any change: the table is replaced
    assert p.raw('SELECT "ItemName" FROM raw.definition WHERE "DefNum" = 7') == [(None,)]
