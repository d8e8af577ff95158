"""Gentle on the practice's server (issue 10, item 5): the source is a live MyISAM database, where a statement
reading a table makes every writer of that table wait until it ends. A full copy of a table that takes
seconds, on either path, must leave a concurrent one-row UPDATE waiting well under a second, with the copy
exact; verify and reconcile read the source in chunks whose statements are short."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

import etl.verify
from etl.config import load_config
from etl.runner import reconcile
from etl.verify import verify
from tests.conftest import mysql_conn
from tests.integration.engine_helpers import Pipeline

pytestmark = pytest.mark.integration

#: ~300 bytes a row: a full copy of 600,000 takes a few seconds even on a quiet machine (1.4 s for half as
#: many was too short to show that one whole-table statement would have held the writer back).
ROWS = 600_000
DDL = """
CREATE TABLE procedurelog (
  ProcNum bigint(20) NOT NULL,
  Note text,
  ProcFee double NOT NULL DEFAULT 0,
  DateTStamp timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp(),
  PRIMARY KEY (ProcNum)
) ENGINE=MyISAM DEFAULT CHARSET=utf8mb4
"""
CONFIG = {"incremental_columns": ["DateTStamp"], "primary_incremental_column": "DateTStamp",
          "primary_key": "ProcNum", "extraction_strategy": "incremental", "batch_size": 100_000,
          "delete_detection": "reconcile"}
#: The longest a writer may wait behind the copy: the chunks aim at ETL_CHUNK_SECONDS (0.25 s); the rest is
#: room for a loaded, shared machine. A whole-table statement makes it wait for the entire copy (seconds).
WAIT_BOUND = 1.0


def _pipeline(settings, rows: int) -> Pipeline:
    p = Pipeline(settings, {"procedurelog": CONFIG})
    p.source(DDL)
    p.source("INSERT INTO procedurelog (ProcNum, Note, ProcFee, DateTStamp) "
             "SELECT seq, CONCAT(seq, ' ', REPEAT('note ', 60)), seq / 8, '2024-05-01 10:00:00' "
             f"FROM seq_1_to_{rows}")
    return p


@pytest.fixture
def big(settings):
    return _pipeline(settings, ROWS)


@pytest.fixture
def medium(settings):
    return _pipeline(settings, 60_000)


class Writer:
    """A front desk: a one-row UPDATE of the table every 20 ms on its own connection, each one timed. It
    leaves the row as it was (the copy is compared with the source afterwards) but takes the table's write
    lock like any edit."""

    def __init__(self, settings):
        self.conn = mysql_conn(settings.source_url)
        self.waits: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.write, daemon=True)

    def write(self) -> None:
        key = 1
        with self.conn.cursor() as cur:
            while not self.stop.is_set():
                started = time.monotonic()
                cur.execute("UPDATE procedurelog SET ProcFee = ProcFee WHERE ProcNum = %s", (key,))
                self.waits.append(time.monotonic() - started)
                key = key * 7919 % ROWS + 1
                self.stop.wait(0.02)

    def __enter__(self) -> "Writer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.conn.close()


def _rows(query):
    return query("SELECT ProcNum, Note, ProcFee, DateTStamp FROM procedurelog ORDER BY ProcNum")


@pytest.mark.parametrize("path", ["same server", "separate servers"])
def test_a_writer_never_waits_long_behind_a_full_copy(big, path):
    settings = big.settings if path == "same server" else big.separate_servers()
    with Writer(big.settings) as writer:
        time.sleep(0.2)
        started = time.monotonic()
        result = big.run(["copy"], settings=settings)
        took = time.monotonic() - started
        time.sleep(0.2)
    assert result[("copy", "procedurelog")].rows_read == ROWS
    assert _rows(big.replica) == _rows(big.source)
    # The copy lasted long enough that one statement reading the whole table would have held the writer
    # back for longer than the bound; chunked, the writer got through between chunks all along.
    assert took > 1.5 * WAIT_BOUND, f"the copy took only {took:.2f} s: too short to show anything"
    # (each write waits for the chunk under way: about half a chunk on average, so a few writes a second)
    assert len(writer.waits) > took / WAIT_BOUND
    assert max(writer.waits) <= WAIT_BOUND, f"a writer waited {max(writer.waits):.2f} s (copy {took:.2f} s)"


def test_an_incremental_copy_after_a_crowded_edit_is_chunked_and_exact(big):
    """Every row edited at once (a bulk edit), then the incremental copy reads all of them: chunked too."""
    big.run(["copy"])
    big.source("UPDATE procedurelog SET ProcFee = ProcFee + 1, DateTStamp = '2024-05-02 10:00:00'")
    with Writer(big.settings) as writer:
        result = big.run(["copy"])
    assert result[("copy", "procedurelog")].rows_read > 0
    assert _rows(big.replica) == _rows(big.source)
    assert max(writer.waits) <= WAIT_BOUND, f"a writer waited {max(writer.waits):.2f} s"


def _timed_source_reads(monkeypatch, source_database: str) -> list[tuple[str, dict, float]]:
    """Every statement verify/reconcile runs against the source: (template, binds, seconds)."""
    seen: list[tuple[str, dict, float]] = []
    for name in ("fetch_all", "fetch_one"):
        original = getattr(etl.verify, name)

        def timed(conn, statement, params=None, _original=original):
            started = time.monotonic()
            try:
                return _original(conn, statement, params)
            finally:
                if f"`{source_database}`" in statement.text:
                    seen.append((statement.name, dict(params or {}), time.monotonic() - started))
        monkeypatch.setattr(etl.verify, name, timed)
    return seen


def test_verify_and_reconcile_read_the_source_in_short_chunks(medium, monkeypatch):
    big = medium
    big.run(["copy", "load"])
    big.source("DELETE FROM procedurelog WHERE ProcNum IN (17, 30000, 59999)")
    settings = replace(big.settings, chunk_seconds=0.02)
    config = load_config(settings.tables_path)
    seen = _timed_source_reads(monkeypatch, settings.source_url.database)

    # A chunk starts at FIRST_SPAN keys and at most doubles: however fast the machine, 60,000 keys take at
    # least four statements, none wider than 32,768 keys (before: one statement over the whole range).
    report = verify(settings, config)
    buckets = [p["hi"] - p["lo"] for name, p, took in seen if name == "mysql/verify_buckets"]
    assert len(buckets) >= 4 and max(buckets) <= 8 * etl.verify.FIRST_SPAN, buckets
    assert max(took for _, _, took in seen) <= WAIT_BOUND, sorted(seen, key=lambda s: -s[2])[:3]
    pair = report["tables"][0]["pairs"]["source->replica"]
    assert (pair["missing"], pair["extra"], pair["different"]) == (0, 3, 0)
    assert pair["examples"]["extra"] == [17, 30000, 59999]

    seen.clear()
    deleted = reconcile(settings, config, ["procedurelog"])
    assert deleted["procedurelog"] == {"replica": 3, "raw": 3}
    buckets = [p["hi"] - p["lo"] for name, p, took in seen if name == "mysql/verify_buckets"]
    assert len(buckets) >= 4 and max(buckets) <= 8 * etl.verify.FIRST_SPAN, buckets
    assert max(took for _, _, took in seen) <= WAIT_BOUND
    keys = [r[0] for r in big.source("SELECT ProcNum FROM procedurelog ORDER BY ProcNum")]
    assert [r[0] for r in big.replica("SELECT ProcNum FROM procedurelog ORDER BY ProcNum")] == keys
    assert [r[0] for r in big.raw('SELECT "ProcNum" FROM raw.procedurelog ORDER BY 1')] == keys
