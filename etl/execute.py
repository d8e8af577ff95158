"""Moving rows for a plan: keyset-paged reads, a file-like COPY feed, server clocks. No tables.yml here."""

from __future__ import annotations

import datetime as dt
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import pymysql.converters

from etl import watermark
from etl.db import execute, fetch_one
from etl.errors import PhaseError, SchemaError
from etl.plan import Horizon, Plan
from etl.render import Ident, Statement, render

#: Encoders only, no decoders: data rows are read as the server's own text (or bytes for binary), so a
#: value is never reinterpreted by Python on its way through (doubles, TIME beyond 24h, zero dates).
RAW_TEXT_CONV = {k: v for k, v in pymysql.converters.conversions.items() if not isinstance(k, int)}


def parse_lead(value: Any, kind: str) -> Any:
    """A keyset/watermark value read as text, back to its type (zero dates stay text: unusable)."""
    if value is None or kind == "text":
        return value
    if isinstance(value, bytes):
        value = value.decode()
    try:
        return watermark.parse(value, kind)
    except SchemaError:
        return value


def keyset_batches(
    conn: Any,
    render_batch: Callable[[bool], Statement],
    plan: Plan,
    lead_kinds: Sequence[str],
    params: dict[str, Any],
    start_after: tuple | None = None,
) -> Iterator[list[tuple]]:
    """Yield batches of rows in plan order; each batch starts strictly after the last row of the previous.

    Rows are tuples whose first len(plan.lead) values are parsed by `lead_kinds`. Every batch is its own
    short query (MyISAM source tables are locked only while one batch is read).
    """
    order_len = len(plan.order)
    after: tuple | None = start_after
    first = render_batch(False)
    paged = render_batch(True)
    lead_len = len(lead_kinds)
    while True:
        statement = first if after is None else paged
        batch_params = dict(params, batch_size=plan.batch_size)
        if after is not None:
            batch_params.update({f"k{i}": v for i, v in enumerate(after)})
        with conn.cursor() as cur:
            execute(cur, statement, batch_params)
            raw = cur.fetchall()
        if not raw:
            return
        rows = [tuple(parse_lead(v, k) for v, k in zip(r[:lead_len], lead_kinds)) + tuple(r[lead_len:]) for r in raw]
        yield rows
        if len(raw) < plan.batch_size:
            return
        after = rows[-1][:order_len]


class ChunkReader:
    """A read()-able view of an iterator of byte chunks, for psycopg2's copy_expert."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks

    def read(self, size: int = -1) -> bytes:
        for chunk in self._chunks:
            if chunk:
                return chunk
        return b""

    readline = read


def floor_second(value: dt.datetime) -> dt.datetime:
    return value.replace(microsecond=0)


def capture_horizon(conn: Any, plan_columns: Sequence[Any], database: str, table: str,
                    render: Callable[..., Statement]) -> Horizon:
    """Upper bounds from the server's own clock and data, captured before the read starts."""
    utc_now, local_now, oldest_trx = fetch_one(conn, render("mysql/horizon"))
    utc_now, local_now = _as_datetime(utc_now), _as_datetime(local_now)
    lag = dt.timedelta(0)
    if oldest_trx is not None:
        # A transaction open since then may still commit rows stamped with its own (older) time.
        lag = max(dt.timedelta(0), utc_now - _as_datetime(oldest_trx))
    integer_max: dict[str, int | None] = {}
    for column in plan_columns:
        if column.watermark_kind == "integer":
            value = fetch_one(conn, render("mysql/max_value", database=Ident(database), table=Ident(table),
                                           column=column.name))[0]
            integer_max[column.name] = parse_lead(value, "integer")
    datetime_upper = floor_second(local_now - lag)
    return Horizon(
        timestamp_upper=floor_second(utc_now - lag),
        datetime_upper=datetime_upper,
        date_upper=datetime_upper.date(),
        integer_max=integer_max,
    )


def _as_datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, bytes):
        value = value.decode()
    return dt.datetime.fromisoformat(str(value))


#: A block (one GROUP_CONCAT value) aims at this size: big enough that per-query costs vanish, small
#: enough that a few of them in flight keep memory flat.
TARGET_BLOCK_BYTES = 4 << 20
#: Rows of the first block of a read, before its bytes per row are known (wide rows: a few MB).
FIRST_BLOCK_ROWS = 2000


@dataclass(frozen=True)
class Block:
    """Rows of a read, rendered and joined by the server: what a block SELECT returns."""

    rows: int
    adjusted: int
    maxima: tuple[Any, ...]   # per plan bound: the largest value this run may record (typed), or None
    data: bytes               # the rows, one per line, joined by b"\n" (no trailing newline)


def admission_params(plan: Plan) -> dict[str, Any]:
    """Binds of `admissible` (_macros/predicates.sql.j2): per bound i, m{i}_floor and m{i}_hi."""
    params: dict[str, Any] = {}
    for i, bound in enumerate(plan.bounds):
        if bound.kind == "datetime":
            params[f"m{i}_floor"] = dt.datetime(watermark.SENTINEL_YEAR_MAX + 1, 1, 1)
        elif bound.kind == "date":
            params[f"m{i}_floor"] = dt.date(watermark.SENTINEL_YEAR_MAX + 1, 1, 1)
        if bound.upper_set:
            params[f"m{i}_hi"] = bound.upper
    return params


def read_blocks(
    conn: Any,
    plan: Plan,
    render_block: Callable[[bool, bool], Statement],
    render_boundary: Callable[[bool], Statement],
    params: dict[str, Any],
    *,
    max_rows: int,
    target_bytes: int = TARGET_BLOCK_BYTES,
    between: Callable[[], Any] | None = None,
    start_after: tuple | None = None,
) -> Iterator[Block]:
    """The rows of a plan as blocks: each block one query returning one value (the rows joined by the
    server), so no row is parsed in Python.

    A block ends at a key found first (read_boundary: the key `n` rows on, in plan order), so blocks
    never overlap and need no ORDER BY of their own. `n` starts at FIRST_BLOCK_ROWS and follows the bytes
    per row towards `target_bytes`, never above `max_rows` (the table's batch_size). A block the server
    cut short (longer than max_allowed_packet) is read again in smaller pieces.
    render_block(after_key, upto_key) -> Statement with columns: rows, adjusted, one maximum per plan
    bound, data; render_boundary(after_key) -> the boundary SELECT.
    `params`: the block's binds besides the keysets (the plan's window, and any of the caller's own).
    `between`: called after each block's queries (the copy ends its read transaction there).
    `start_after`: a key in plan order the read starts after (watermark_resume).
    """
    execute_plain(conn, "mysql/session_blocks")
    limit = int(fetch_one(conn, render("mysql/session_blocks_limit"))[0])
    order_kinds = plan.lead_kinds[: len(plan.order)]
    statements: dict[tuple, Statement] = {}

    def statement(kind: str, *flags: bool) -> Statement:
        if (kind, flags) not in statements:
            statements[(kind, flags)] = render_block(*flags) if kind == "block" else render_boundary(*flags)
        return statements[(kind, flags)]

    base = dict(params, **admission_params(plan))
    after: tuple | None = start_after
    n = max(1, min(max_rows, FIRST_BLOCK_ROWS))  # then sized by the bytes per row seen
    while True:
        keyset = {} if after is None else {f"k{i}": v for i, v in enumerate(after)}
        found = fetch_one(conn, statement("boundary", after is not None),
                          dict(plan.window_params(), **keyset, offset=n - 1))
        upto = None if found is None else tuple(parse_lead(v, k) for v, k in zip(found, order_kinds))
        block_params = dict(base, **keyset)
        if upto is not None:
            block_params.update({f"u{i}": v for i, v in enumerate(upto)})
        row = fetch_one(conn, statement("block", after is not None, upto is not None), block_params)
        if between is not None:
            between()
        rows, adjusted, data = int(row[0]), int(row[1]), row[-1] or b""
        if isinstance(data, str):
            data = data.encode()
        if rows and (len(data) >= limit or data.count(b"\n") + 1 != rows):
            if n == 1:
                raise PhaseError(f"{plan.table}: the row after key {after} is larger than the server's "
                                 f"max_allowed_packet ({limit} bytes); raise it to read this table")
            n = max(1, n // 4)
            continue
        maxima = tuple(parse_lead(v, b.kind) for v, b in zip(row[2:2 + len(plan.bounds)], plan.bounds))
        if rows:
            yield Block(rows=rows, adjusted=adjusted, maxima=maxima, data=data)
            n = max(1, min(max_rows, int(target_bytes * rows / max(len(data), 1))))
        if upto is None:
            return
        after = upto


def execute_plain(conn: Any, name: str) -> None:
    with conn.cursor() as cur:
        execute(cur, render(name))


_DONE = object()


def prefetch(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Iterate `items` in a thread, `depth` ahead of the consumer: the next block is being read from
    MySQL while the current one goes to PostgreSQL (both drivers release the GIL while they wait).

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


#: A watermark value shared by more rows than this (a bulk edit stamps thousands of rows with one
#: second) is not read again in full by the next run: see watermark_resume.
RESCAN_LIMIT = 1000


def watermark_resume(plan: Plan, count_at: Callable[[Any], int],
                     last_key_at: Callable[[Any], tuple | None]) -> tuple | None:
    """Where an incremental read may start instead of at its watermark: (watermark, *key), or None.

    The lower bound is inclusive, so every run reads the rows of the watermark's own second again: a
    row written into that second after it was read (possible only by assigning the column explicitly:
    the horizon never lets a run read a second that is still open) is not lost. A handful of rows costs
    nothing; the 100,000 rows of a bulk edit cost seconds on every run. So when more than RESCAN_LIMIT
    rows share the watermark value, the read starts after the largest key the target already holds at
    that value (`last_key_at`, asked of the phase's own target: it holds exactly what was read, even
    after a crash between two blocks). What is given up: a row of such a second that is assigned
    exactly that value again after it was read, with no newer stamp, waits for its next edit (a row
    assigned any older value is invisible to every watermark anyway). `count_at(value)` counts the
    rows at the value (index-only on the replica). Only for a primary timestamp/date watermark that is
    not the key itself.
    """
    bound = plan.primary
    if plan.strategy != "primary" or bound is None or bound.lower is None or len(plan.order) < 2:
        return None
    if bound.kind not in ("datetime", "date") or count_at(bound.lower) <= RESCAN_LIMIT:
        return None
    key = last_key_at(bound.lower)
    if key is None:
        return None
    kinds = plan.lead_kinds[1:len(plan.order)]
    return (bound.lower,) + tuple(parse_lead(v, k) if isinstance(v, (str, bytes)) else v for v, k in zip(key, kinds))
