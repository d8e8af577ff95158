"""Reading a plan's rows out of MySQL: whole blocks rendered by the server, or keyset batches of rows, and a
thread that reads the next block while the current one is written.

Generic over the statements: a recipe (etl/recipe.py) hands in what to run, the executor (etl/executor.py)
decides where the rows go. Every query is short and bounded (a MyISAM source table is locked only while
one block or batch is read).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from etl import watermark
from etl.db import execute, fetch_one
from etl.errors import PhaseError
from etl.plan import Plan
from etl.render import Statement

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
    """
    limit = prepare_session(conn, *session)
    order_kinds = plan.lead_kinds[: len(plan.order)]
    window = plan.window_params()
    after: tuple | None = start_after
    n = max(1, min(max_rows, FIRST_BLOCK_ROWS))  # then sized by the bytes per row seen
    while True:
        keyset = {} if after is None else {f"k{i}": v for i, v in enumerate(after)}
        found = fetch_one(conn, boundary(after is not None), dict(window, **keyset, offset=n - 1))
        upto = None if found is None else tuple(watermark.typed(v, k) for v, k in zip(found, order_kinds))
        block_params = dict(params, **keyset)
        if upto is not None:
            block_params.update({f"u{i}": v for i, v in enumerate(upto)})
        row = fetch_one(conn, block(after is not None, upto is not None), block_params)
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
        maxima = tuple(watermark.typed(v, b.kind) for v, b in zip(row[2:2 + len(plan.bounds)], plan.bounds))
        if rows:
            yield Block(rows=rows, adjusted=adjusted, maxima=maxima, data=data)
            n = max(1, min(max_rows, int(target_bytes * rows / max(len(data), 1))))
        if upto is None:
            return
        after = upto


def read_batches(
    conn: Any,
    plan: Plan,
    batch: Callable[[bool], Statement],
    params: dict[str, Any],
    *,
    between: Callable[[], Any] | None = None,
    start_after: tuple | None = None,
) -> Iterator[Batch]:
    """The rows of a plan in batches of plan.batch_size, each its own short query starting strictly after
    the last row of the previous (keyset paging in plan order).

    batch(after_key) -> the SELECT whose columns are plan.lead (typed here by plan.lead_kinds), then every
    column of the table (binds: `params`, batch_size, and the keyset k<i>). `between`: called after each
    batch's query."""
    order_len, lead_kinds = len(plan.order), plan.lead_kinds
    lead_len = len(lead_kinds)
    lead_index = {name: i for i, name in enumerate(plan.lead)}
    after: tuple | None = start_after
    while True:
        batch_params = dict(params, batch_size=plan.batch_size)
        if after is not None:
            batch_params.update({f"k{i}": v for i, v in enumerate(after)})
        with conn.cursor() as cur:
            execute(cur, batch(after is not None), batch_params)
            raw = cur.fetchall()
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
        if len(raw) < plan.batch_size:
            return
        after = rows[-1][:order_len]


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
