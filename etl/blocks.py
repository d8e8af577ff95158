"""Reading a plan's rows out of MySQL: whole blocks rendered by the server, or keyset batches of rows, and a
thread that reads the next block while the current one is written.

Generic over the statements: a recipe (etl/recipe.py) hands in what to run, the executor (etl/executor.py)
decides where the rows go. Every query is short and bounded (a MyISAM source table is locked only while
one block or batch is read): a read of the source is also sized by time (:func:`resize`), so a statement
takes about ETL_CHUNK_SECONDS whatever the row width, the server's load or the table's indexes.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from etl import watermark
from etl.db import execute, fetch_one
from etl.errors import PhaseError
from etl.plan import Plan
from etl.recipe import LongRows, LongValue
from etl.render import Statement

#: A block (one GROUP_CONCAT value) aims at this size: big enough that per-query costs vanish, small
#: enough that a few of them in flight keep memory flat.
TARGET_BLOCK_BYTES = 4 << 20
#: Rows of the first block of a read, before its bytes per row are known (wide rows: a few MB).
FIRST_BLOCK_ROWS = 2000
#: How long one statement against the source aims to take (ETL_CHUNK_SECONDS): a MyISAM table is locked
#: against every writer while a statement reads it, so this is about the longest a front-desk edit waits.
TARGET_SECONDS = 0.25
#: A chunk grows at most this much from one statement to the next (a fast chunk of a few rows says little
#: about the next), and shrinks as much as its duration says at once.
MAX_GROWTH = 2.0
#: A chunk never shrinks below this many rows (a statement's fixed costs would dominate).
MIN_CHUNK_ROWS = 100
#: A row whose long values (text, binary) are longer than this in all is read alone, its values in parts
#: (:func:`fill_long_rows`), never rendered into a block: a rendered value comes back NULL once it is longer
#: than max_allowed_packet, and a block of such rows would be cut. Lowered to a quarter of the server's limit.
LONG_ROW_BYTES = 1 << 20
#: ...and a row longer than this that needs escaping: the server's REPLACE costs time quadratic in a
#: value's length when it holds many matches (1 MiB of text with a line break every 76 characters: ~9 s;
#: at 16 KiB ~2 ms); Python's replace is linear.
LONG_ESCAPED_BYTES = 16 << 10
#: The largest part of a long value read at once (bytes; a quarter for utf8mb4 text, in characters), and
#: at most half the server's max_allowed_packet. Few parts: each one re-reads the value up to its start.
PART_BYTES = 8 << 20


def resize(rows: int, seconds: float, target: float, *, most: int | None = None) -> int:
    """The next chunk's rows, from the last chunk's rows and how long its statements took: scaled towards
    `target` seconds (at most MAX_GROWTH times larger, as much smaller as needed), within
    [MIN_CHUNK_ROWS, most]. The adaptive sizing of Percona's pt-archiver/pt-online-schema-change and
    gh-ost's chunks: the time a statement locks a table is what is bounded, not its rows."""
    factor = MAX_GROWTH if seconds <= 0 else min(MAX_GROWTH, target / seconds)
    rows = max(MIN_CHUNK_ROWS, int(rows * factor))
    return rows if most is None else max(1, min(most, rows))


@dataclass(frozen=True)
class Block:
    """Rows of a read, rendered and joined by the server: what a block SELECT returns."""

    rows: int
    adjusted: int
    maxima: tuple[Any, ...]   # per plan bound: the largest value this run may record (typed), or None
    data: bytes               # the rows, one per line, joined by b"\n" (no trailing newline)


@dataclass(frozen=True)
class Batch:
    """Rows of a read as values (the row-by-row path): the columns of the table, in table order."""

    rows: int
    maxima: tuple[Any, ...]
    values: list[tuple]
    adjusted: int = 0


def prepare_session(conn: Any, setup: Statement, limit: Statement) -> int:
    """Let a block grow to the largest value the server returns; returns that size (a longer block was cut)."""
    with conn.cursor() as cur:
        execute(cur, setup)
    return int(fetch_one(conn, limit)[0])


def read_blocks(
    conn: Any,
    plan: Plan,
    boundary: Callable[[bool], Statement],
    block: Callable[[bool, bool], Statement],
    params: dict[str, Any],
    *,
    session: tuple[Statement, Statement],
    max_rows: int,
    target_bytes: int = TARGET_BLOCK_BYTES,
    between: Callable[[], Any] | None = None,
    start_after: tuple | None = None,
    target_seconds: float | None = None,
    long_rows: LongRows | None = None,
) -> Iterator[Block]:
    """The rows of a plan as blocks: each block one query returning one value (the rows joined by the
    server), so no row is parsed in Python.

    A block ends at a key found first (the boundary: the key `n` rows on, in plan order), so blocks
    never overlap and need no ORDER BY of their own. `n` starts at FIRST_BLOCK_ROWS and follows the bytes
    per row towards `target_bytes`, never above `max_rows` (the table's batch_size). A block the server
    cut short (longer than the limit `session` sets) is read again in smaller pieces.
    boundary(after_key) -> the boundary SELECT (binds: the plan's window, the keyset k<i>, offset);
    block(after_key, upto_key) -> the block SELECT, with columns: rows, adjusted, one maximum per plan
    bound, data (binds: `params`, and the keysets k<i> and u<i>).
    `between`: called after each block's queries (the copy ends its read transaction there).
    `start_after`: a key in plan order the read starts after (plan.watermark_resume).
    `target_seconds`: a block's two queries aim at this duration too (the source: see :func:`resize`).
    `long_rows`: the block marks a long row instead of rendering it (binds long_row, long_escaped); the
    row is read alone and its line takes the marker's place (:func:`fill_long_rows`).
    """
    limit = prepare_session(conn, *session)
    long_params = {"long_row": min(LONG_ROW_BYTES, limit // 4), "long_escaped": min(LONG_ESCAPED_BYTES, limit // 4)}
    order_kinds = plan.lead_kinds[: len(plan.order)]
    window = plan.window_params()
    after: tuple | None = start_after
    n = max(1, min(max_rows, FIRST_BLOCK_ROWS))  # then sized by the bytes per row seen
    while True:
        keyset = {} if after is None else {f"k{i}": v for i, v in enumerate(after)}
        started = time.monotonic()
        found = fetch_one(conn, boundary(after is not None), dict(window, **keyset, offset=n - 1))
        upto = None if found is None else tuple(watermark.typed(v, k) for v, k in zip(found, order_kinds))
        block_params = dict(params, **keyset)
        if upto is not None:
            block_params.update({f"u{i}": v for i, v in enumerate(upto)})
        statement = block(after is not None, upto is not None)
        if "long_row" in statement.binds:
            block_params.update(long_params)
        row = fetch_one(conn, statement, block_params)
        took = time.monotonic() - started
        rows, adjusted, data = int(row[0]), int(row[1]), row[-1]
        lost = data is None  # every line NULL (GROUP_CONCAT skips a NULL line: the count below sees one)
        data = data or b""
        if isinstance(data, str):
            data = data.encode()
        if rows and (lost or len(data) >= limit or data.count(b"\n") + 1 != rows):
            if between is not None:
                between()
            if n == 1:
                raise PhaseError(f"{plan.table}: the row after key {after} could not be rendered by the server "
                                 f"(max_allowed_packet {limit} bytes); raise max_allowed_packet to read this table")
            n = max(1, n // 4)
            continue
        if long_rows is not None and b"\x00" in data:
            data, more = fill_long_rows(conn, data, long_rows, params, limit)
            adjusted += more
        if between is not None:
            between()
        maxima = tuple(watermark.typed(v, b.kind) for v, b in zip(row[2:2 + len(plan.bounds)], plan.bounds))
        if rows:
            yield Block(rows=rows, adjusted=adjusted, maxima=maxima, data=data)
            by_bytes = int(target_bytes * rows / max(len(data), 1))
            if target_seconds is not None:
                by_bytes = min(by_bytes, resize(n, took, target_seconds))
            n = max(1, min(max_rows, by_bytes))
        if upto is None:
            return
        after = upto


def fill_long_rows(conn: Any, data: bytes, long_rows: LongRows, params: dict[str, Any],
                   limit: int) -> tuple[bytes, int]:
    """Replace every marker line of a block (a NUL byte, then the row's key values in hex) with the row's
    line read alone: the server renders the row with its long values held back as empty fields; each long
    value is read in parts far below max_allowed_packet and escaped here, in time linear in its length.
    Returns the block and how many values the escaping adjusted (NUL bytes removed). Runs in the block's
    read transaction (the load's snapshot)."""
    part_bytes = max(1, min(PART_BYTES, limit // 2))
    lines = data.split(b"\n")
    adjusted = 0
    for i, line in enumerate(lines):
        if not line.startswith(b"\x00"):
            continue
        key = {f"r{j}": bytes.fromhex(h.decode()) for j, h in enumerate(line[1:].split(b"\t"))}
        statement = long_rows.row.get()
        row_params = {k: params[k] for k in statement.binds if k in params}
        found = fetch_one(conn, statement, dict(row_params, **key))
        if found is None:
            raise PhaseError(f"a long row with key {tuple(key.values())} vanished while it was read")
        text = found[0].encode() if isinstance(found[0], str) else found[0]
        fields = text.split(b"\t")
        for value, length in zip(long_rows.values, found[1:]):
            if fields[value.position] == b"\\N" or length is None:
                continue
            unit = part_bytes if value.kind.endswith("binary") else max(1, part_bytes // 4)  # characters: <= 4 bytes
            parts = []
            for start in range(1, int(length) + 1, unit):
                got = fetch_one(conn, value.part.get(), dict(key, part_start=start, part_length=unit))[0]
                if got is None:
                    raise PhaseError(f"a part of the long value at field {value.position + 1} of the row with key "
                                     f"{tuple(key.values())} came back NULL (max_allowed_packet {limit} bytes)")
                parts.append(got.encode() if isinstance(got, str) else bytes(got))
            field, changed = escape(b"".join(parts), value.kind)
            fields[value.position] = field
            adjusted += changed
        lines[i] = b"\t".join(fields)
    return b"\n".join(lines), adjusted


def escape(value: bytes, kind: str) -> tuple[bytes, int]:
    """One long value as the block's text would hold it (_macros/copy_text.sql.j2, infile_text.sql.j2),
    in one pass per special byte: 'copy text' (backslash, newline, carriage return and tab escaped, NUL
    bytes removed), 'copy binary' (bytea hex), 'infile text' and 'infile binary' (backslash, tab, newline
    and NUL escaped). Returns
    the field and 1 when a NUL byte was removed."""
    if kind == "copy binary":
        return b"\\\\x" + value.hex().upper().encode(), 0
    if kind == "copy text":
        removed = b"\x00" in value
        value = value.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
        return value.replace(b"\t", b"\\t").replace(b"\x00", b""), int(removed)
    value = value.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n")
    return value.replace(b"\x00", b"\\0"), 0


def read_batches(
    conn: Any,
    plan: Plan,
    batch: Callable[[bool], Statement],
    params: dict[str, Any],
    *,
    between: Callable[[], Any] | None = None,
    start_after: tuple | None = None,
    target_seconds: float | None = None,
    long_values: tuple[LongValue, ...] = (),
    limit: int | None = None,
) -> Iterator[Batch]:
    """The rows of a plan in batches of at most plan.batch_size, each its own short query starting strictly
    after the last row of the previous (keyset paging in plan order); with `target_seconds`, a batch starts
    at FIRST_BLOCK_ROWS rows and follows its query's duration (:func:`resize`).

    batch(after_key) -> the SELECT whose columns are plan.lead (typed here by plan.lead_kinds), then every
    column of the table (binds: `params`, batch_size, and the keyset k<i>). `between`: called after each
    batch's query. `long_values`: the batch holds these back in a row longer than `long_row` (a last column
    flags it), read here in parts below `limit` (the server's max_allowed_packet: :func:`read_long_values`)."""
    if long_values:
        limit = limit or LONG_ROW_BYTES * 4
        params = dict(params, long_row=min(LONG_ROW_BYTES, limit // 4))
        columns = [c.name for c in plan.columns]
        key_at = tuple(columns.index(k) for k in plan.key)
    order_len, lead_kinds = len(plan.order), plan.lead_kinds
    lead_len = len(lead_kinds)
    lead_index = {name: i for i, name in enumerate(plan.lead)}
    after: tuple | None = start_after
    n = plan.batch_size if target_seconds is None else max(1, min(plan.batch_size, FIRST_BLOCK_ROWS))
    while True:
        batch_params = dict(params, batch_size=n)
        if after is not None:
            batch_params.update({f"k{i}": v for i, v in enumerate(after)})
        started = time.monotonic()
        with conn.cursor() as cur:
            execute(cur, batch(after is not None), batch_params)
            raw = cur.fetchall()
        if long_values:
            raw = [r[:-1] if not int(r[-1]) else r[:lead_len] + read_long_values(
                       conn, r[lead_len:-1], key_at, long_values, limit) for r in raw]
        took = time.monotonic() - started
        if between is not None:
            between()
        if not raw:
            return
        rows = [tuple(watermark.typed(v, k) for v, k in zip(r[:lead_len], lead_kinds)) + tuple(r[lead_len:])
                for r in raw]
        maxima = tuple(
            max((row[lead_index[b.column]] for row in rows if b.admits(row[lead_index[b.column]])), default=None)
            for b in plan.bounds)
        yield Batch(rows=len(rows), maxima=maxima, values=[row[lead_len:] for row in rows])
        if len(raw) < n:
            return
        after = rows[-1][:order_len]
        if target_seconds is not None:
            n = resize(n, took, target_seconds, most=plan.batch_size)


def read_long_values(conn: Any, row: tuple, key_at: tuple[int, ...], long_values: tuple[LongValue, ...],
                     limit: int) -> tuple:
    """A batch row with its long values filled in, each read in parts far below `limit` (the server's
    max_allowed_packet), as the bytes of its column (its own character set, which the replica's column
    shares). A part shorter than asked is the value's last."""
    part_bytes = max(1, min(PART_BYTES, limit // 2))
    key = {f"r{j}": row[i] for j, i in enumerate(key_at)}
    out = list(row)
    for value in long_values:
        if out[value.position] is None:
            continue
        unit = part_bytes if value.kind.endswith("binary") else max(1, part_bytes // 4)  # characters: <= 4 bytes
        parts: list[bytes] = []
        start = 1
        while True:
            got = fetch_one(conn, value.part.get(), dict(key, part_start=start, part_length=unit))
            if got is None or got[0] is None:
                raise PhaseError(f"the long value at column {value.position + 1} of the row with key "
                                 f"{tuple(key.values())} vanished while it was read in parts (the next run reads it again)")
            part = got[0].encode() if isinstance(got[0], str) else bytes(got[0])
            parts.append(part)
            if len(part) < unit:
                break
            start += unit
        out[value.position] = b"".join(parts)
    return tuple(out)


_DONE = object()


def prefetch(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Iterate `items` in a thread, `depth` ahead of the consumer: the next block is being read from
    MySQL while the current one is written (both drivers release the GIL while they wait).

    The producer owns whatever connection `items` uses until this generator is exhausted or closed;
    closing it (or an error on either side) stops the producer before returning.
    """
    box: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        box.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, raised there
            box.put((_DONE, exc))

    thread = threading.Thread(target=produce, name="etl-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = box.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                box.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()
