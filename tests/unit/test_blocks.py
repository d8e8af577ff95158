"""etl/blocks.py against fake connections: how a read is cut into blocks and batches, how a block the server
cut short is read again, and the prefetch thread."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from etl import blocks
from etl.errors import PhaseError
from etl.plan import Plan
from etl.recipe import BlockRead, LongRows, LongValue, Transfer, Variants
from etl.render import Statement
from tests import snapshot_cases as sc
from tests.fakes import FakeConn

LIMIT = 1_000_000


def plan(table: str = "patient", phase: str = "load", strategy: str = "primary") -> Plan:
    return sc.plan_for(sc.demo_config()[table], phase, strategy)


def block_read(p: Plan, phase: str = "load") -> BlockRead:
    """The block read of the phase's own recipe for `p` (its statements, as a run renders them)."""
    example = next(e for e in sc.PHASES[phase].EXAMPLES if e.name in ("incremental", "separate-servers-incremental"))
    recipe = sc.recipe_for(phase, p.config, example)
    return next(s for s in recipe.walk() if isinstance(s, Transfer)).read


class Server:
    """Answers a block read: boundaries and blocks from two queues, and records what it was asked."""

    def __init__(self, boundaries: list, block_rows: list, limit: int = LIMIT):
        self.boundaries, self.block_rows, self.limit = list(boundaries), list(block_rows), limit
        self.conn = FakeConn(self.answer)

    def answer(self, sql: str):
        if "group_concat_max_len =" in sql:
            return []
        if "LEAST(" in sql:
            return [(str(self.limit),)]
        if "OFFSET" in sql:
            found = self.boundaries.pop(0)
            return [found] if found is not None else []
        return [self.block_rows.pop(0)]

    def asked(self, kind: str) -> list[dict]:
        return [p for sql, p in self.conn.executed if (("OFFSET" in sql) == (kind == "boundary")) and
                ("GROUP_CONCAT" in sql) == (kind == "block")]


def read(p: Plan, server: Server, **kwargs) -> list[blocks.Block]:
    r = block_read(p)
    params = {k: (7 if k == "load_id" else v) for k, v in r.params.items()}
    return list(blocks.read_blocks(server.conn, p, r.boundary.get, r.block.get, params, session=r.session,
                                   max_rows=kwargs.pop("max_rows", p.batch_size), **kwargs))


def test_blocks_end_at_the_keys_the_boundary_query_finds_and_the_last_runs_to_the_end() -> None:
    p = plan()
    stamp = "2025-06-01 10:00:00"
    server = Server(boundaries=[(stamp, "20"), None],
                    block_rows=[(2, 0, stamp, b"r1\nr2"), (1, 1, "2025-06-01 11:00:00", b"r3")])
    got = read(p, server)
    assert [(b.rows, b.adjusted, b.data) for b in got] == [(2, 0, b"r1\nr2"), (1, 1, b"r3")]
    assert got[0].maxima == (dt.datetime(2025, 6, 1, 10),)  # typed by the bound's kind
    first, second = server.asked("block")
    assert {"u0", "u1"} <= set(first) and not {"k0", "k1"} & set(first)
    # the next block starts after the previous one's last key, typed by the key's kinds
    assert (second["k0"], second["k1"]) == (dt.datetime(2025, 6, 1, 10), 20) and "u0" not in second
    boundaries = server.asked("boundary")
    assert boundaries[0]["offset"] == blocks.FIRST_BLOCK_ROWS - 1 and "k0" not in boundaries[0]


def test_block_size_follows_the_bytes_per_row_within_the_batch_size() -> None:
    p = plan()
    server = Server(boundaries=[("2025-06-01 10:00:00", "1"), ("2025-06-01 10:00:00", "9"), None],
                    block_rows=[(100, 0, None, b"x" * 999 + b"\n" * 99), (10, 0, None, b"\n" * 9), (0, 0, None, None)])
    got = read(p, server, target_bytes=50_000, max_rows=300)
    assert [b.rows for b in got] == [100, 10]  # an empty last block is not yielded
    offsets = [a["offset"] for a in server.asked("boundary")]
    # 100 rows in 1098 bytes: ~4,550 rows make 50 kB, but never more than max_rows
    assert offsets == [min(300, blocks.FIRST_BLOCK_ROWS) - 1, 299, 299]


def test_a_block_the_server_cut_short_is_read_again_in_smaller_pieces() -> None:
    p = plan()
    cut = (2000, 0, None, b"a\nb")           # 2000 rows announced, 2 lines arrived: cut by the server
    too_long = (500, 0, None, b"\n" * 499 + b"x" * 20)
    server = Server(boundaries=[("2025-06-01 10:00:00", "1")] * 2 + [None],
                    block_rows=[cut, too_long, (1, 0, None, b"ok")], limit=500)
    got = read(p, server, max_rows=2000)
    assert [b.data for b in got] == [b"ok"]
    assert [a["offset"] for a in server.asked("boundary")] == [1999, 499, 124]  # a quarter each time


def test_a_single_row_larger_than_the_packet_is_an_error_naming_the_table() -> None:
    p = plan()
    server = Server(boundaries=[None], block_rows=[(1, 0, None, b"x" * 20)], limit=10)
    with pytest.raises(PhaseError, match=r"^patient: the row after key None could not be rendered by the server "
                                         r"\(max_allowed_packet 10 bytes\); raise max_allowed_packet"):
        read(p, server, max_rows=1)


def test_a_row_whose_line_came_back_null_is_never_an_empty_line() -> None:
    """GROUP_CONCAT skips a NULL line: one row announced and no text is a cut block, not an empty row."""
    server = Server(boundaries=[None], block_rows=[(1, 0, None, None)], limit=100)
    with pytest.raises(PhaseError, match="could not be rendered"):
        read(plan(), server, max_rows=1)


def test_the_block_statements_bind_the_long_row_limits_from_the_servers_packet() -> None:
    server = Server(boundaries=[None], block_rows=[(1, 0, None, b"r")], limit=400_000)
    read(plan(), server)
    (block,) = server.asked("block")
    assert (block["long_row"], block["long_escaped"]) == (100_000, blocks.LONG_ESCAPED_BYTES)


def _fixed(name: str, text: str) -> Variants:
    return Variants(lambda: Statement(name, text), (), {(): name})


LONG = LongRows(row=_fixed("row", "SELECT row :r0 :load_id"), values=(
    LongValue(1, "copy text", _fixed("part1", "SELECT part1 :r0 :part_start :part_length")),
    LongValue(2, "copy binary", _fixed("part2", "SELECT part2 :r0 :part_start :part_length"))))


def test_a_long_rows_marker_is_replaced_by_the_row_read_alone_its_values_in_parts() -> None:
    text = "a\tb\\c\r\nd\x00é" * 3
    data = bytes(range(256))

    def answer(sql: str):
        if "SELECT row" in sql:
            return [("7\t\t\t2024-01-01\t99", len(text), len(data))]
        return []

    conn = FakeConn(answer)
    parts = {"part1": [text[i:i + 16] for i in range(0, len(text), 16)],
             "part2": [data[i:i + 64] for i in range(0, len(data), 64)]}
    conn.script = lambda sql: answer(sql) or [(parts[sql.split()[1]].pop(0),)]
    block = b"first\n\x00" + b"42".hex().encode() + b"\nlast"
    got, adjusted = blocks.fill_long_rows(conn, block, LONG, {"load_id": 99, "long_row": 1}, limit=128)
    expected_text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    assert got == (b"first\n7\t" + expected_text.replace("\x00", "").encode() + b"\t\\\\x" + data.hex().upper().encode()
                   + b"\t2024-01-01\t99\nlast")
    assert adjusted == 1  # the NUL byte removed
    row, *asked = conn.executed
    assert row[1] == {"r0": b"42", "load_id": 99}
    # text in characters (a quarter of the part's bytes: 128 // 2 // 4 = 16), binary in bytes (64)
    assert [(p["part_start"], p["part_length"]) for _, p in asked] == [(1, 16), (17, 16), (1, 64), (65, 64), (129, 64),
                                                                       (193, 64)]


def test_a_null_long_value_stays_null_and_a_part_that_comes_back_null_is_an_error() -> None:
    conn = FakeConn(lambda sql: [("7\t\\N\t\t1\t2", None, 3)] if "SELECT row" in sql else [(None,)])
    with pytest.raises(PhaseError, match="came back NULL"):
        blocks.fill_long_rows(conn, b"\x00" + b"1".hex().encode(), LONG, {"load_id": 1}, limit=1000)
    conn = FakeConn(lambda sql: [("7\t\\N\t\\N\t1\t2", None, None)])
    assert blocks.fill_long_rows(conn, b"\x00" + b"1".hex().encode(), LONG, {"load_id": 1}, limit=1000) == (
        b"7\t\\N\t\\N\t1\t2", 0)


@pytest.mark.parametrize("kind,value,expected", [
    ("copy text", b"a\\b\tc\nd\re\x00f", b"a\\\\b\\tc\\nd\\ref"),
    ("copy binary", b"\x00\xff\n", b"\\\\x00FF0A"),
    ("infile text", b"a\\b\tc\nd\re\x00f", b"a\\\\b\\tc\\nd\re\\0f"),
    ("infile binary", b"\x00\\", b"\\0\\\\"),
])
def test_escaping_a_long_value_matches_the_servers_text(kind, value, expected) -> None:
    assert blocks.escape(value, kind)[0] == expected


def test_escaping_is_linear_in_the_values_length() -> None:
    """8 MiB of MIME-style text (a line break every 76 characters) escapes in well under a second."""
    value = (b"x" * 74 + b"\r\n") * ((8 << 20) // 76 + 1)
    start = time.perf_counter()
    blocks.escape(value[: 8 << 20], "copy text")
    blocks.escape(value[: 8 << 20], "infile text")
    assert time.perf_counter() - start < 2


def test_between_runs_after_each_block_and_a_read_can_start_after_a_key() -> None:
    p = plan()
    calls = []
    start = (dt.datetime(2025, 5, 31, 23, 59, 59), 424242)
    server = Server(boundaries=[None], block_rows=[(1, 0, None, b"r")])
    read(p, server, between=lambda: calls.append(len(server.conn.executed)), start_after=start)
    assert calls == [len(server.conn.executed)]
    (block,) = server.asked("block")
    assert (block["k0"], block["k1"]) == start


# ---------------------------------------------------------------- keyset batches (the row-by-row copy)

def test_batches_page_by_key_and_record_only_admissible_maxima() -> None:
    p = plan("procedurelog", "copy", "primary")
    p = type(p)(**{**vars(p), "batch_size": 2})
    lead = len(p.lead)
    width = len(p.columns)
    rows = [("2025-05-31 23:59:59.250000", "5") + ("v",) * width,
            ("0000-00-00 00:00:00", "6") + ("w",) * width,         # a zero date: never a watermark
            ("2025-06-01 11:00:00", "9") + ("z",) * width]
    conn = FakeConn([rows[:2], rows[2:]])
    commits = []
    example = next(e for e in sc.PHASES["copy"].EXAMPLES if e.name == "row-by-row-incremental")
    transfer = next(s for s in sc.recipe_for("copy", p.config, example).walk() if isinstance(s, Transfer))
    got = list(blocks.read_batches(conn, p, transfer.read.batch.get, dict(transfer.read.params),
                                   between=lambda: commits.append(1)))
    assert [b.rows for b in got] == [2, 1] and len(commits) == 2
    assert got[0].maxima == (dt.datetime(2025, 5, 31, 23, 59, 59, 250000),)
    assert got[0].values[0] == ("v",) * width and len(got[0].values[0]) == len(rows[0]) - lead
    second = conn.executed[1][1]
    # the last row's key, typed (a zero date stays as read: it sorts as MySQL sorts it)
    assert (second["k0"], second["k1"], second["batch_size"]) == ("0000-00-00 00:00:00", 6, 2)


# ---------------------------------------------------------------- prefetch

def test_prefetch_yields_everything_in_order() -> None:
    assert list(blocks.prefetch(iter(range(50)), depth=3)) == list(range(50))


def test_prefetch_reads_ahead_while_the_consumer_works() -> None:
    produced = []

    def items():
        for i in range(10):
            produced.append(i)
            yield i

    stream = blocks.prefetch(items(), depth=2)
    assert next(stream) == 0
    deadline = time.monotonic() + 5
    while len(produced) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    # one handed over, two waiting in the queue, one read and waiting for room: no more
    assert produced == [0, 1, 2, 3]
    stream.close()


def test_a_producer_error_is_raised_in_the_consumer() -> None:
    def items():
        yield 1
        raise RuntimeError("lost connection while reading")

    stream = blocks.prefetch(items())
    assert next(stream) == 1
    with pytest.raises(RuntimeError, match="lost connection"):
        next(stream)


def test_closing_the_consumer_stops_the_producer() -> None:
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    stream = blocks.prefetch(endless(), depth=1)
    assert next(stream) == 0
    stream.close()
    assert not any(t.name == "etl-prefetch" and t.is_alive() for t in threading.enumerate())


def test_an_error_in_the_consumer_stops_the_producer() -> None:
    with pytest.raises(ZeroDivisionError):
        for item in blocks.prefetch(iter(range(1000)), depth=1):
            1 / (item - 3)
    assert not any(t.name == "etl-prefetch" and t.is_alive() for t in threading.enumerate())


# ---------------------------------------------------------------- chunks sized by time

def test_a_chunk_follows_its_duration_towards_the_target() -> None:
    assert blocks.resize(10_000, 0.5, 0.25) == 5_000           # twice too slow: half the rows
    assert blocks.resize(10_000, 2.5, 0.25) == 1_000           # shrinks at once, as much as needed
    assert blocks.resize(10_000, 0.2, 0.25) == 12_500
    assert blocks.resize(10_000, 0.001, 0.25) == 20_000        # grows at most MAX_GROWTH times
    assert blocks.resize(10_000, 0.0, 0.25) == 20_000
    assert blocks.resize(200, 10.0, 0.25) == blocks.MIN_CHUNK_ROWS
    assert blocks.resize(10_000, 0.001, 0.25, most=15_000) == 15_000


def test_blocks_of_the_source_shrink_when_they_take_too_long(monkeypatch) -> None:
    p = plan()
    clock = iter([0.0, 2.0, 10.0, 10.1, 20.0, 20.1])  # first block 2 s, the next ones fast
    monkeypatch.setattr(blocks.time, "monotonic", lambda: next(clock))
    stamp = "2025-06-01 10:00:00"
    server = Server(boundaries=[(stamp, "1"), (stamp, "2"), None],
                    block_rows=[(1, 0, stamp, b"r1"), (1, 0, stamp, b"r2"), (1, 0, stamp, b"r3")])
    read(p, server, max_rows=100_000, target_seconds=0.25)
    offsets = [b["offset"] for b in server.asked("boundary")]
    # 2000 rows in 2 s: 250 rows for 0.25 s; then fast: twice that (bytes alone would allow 100,000)
    assert offsets == [blocks.FIRST_BLOCK_ROWS - 1, 249, 499]
