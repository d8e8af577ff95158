"""Runs a recipe (etl/recipe.py): the one place where a phase's statements are executed and rows move.

It knows connections (by the roles a recipe names: source, replica, analytics), cursors, the block and
batch readers (etl/blocks.py), progress lines and fault points; it knows nothing of tables.yml or of why a
step is there. Everything it learns (rows read and written, watermark maxima, notes) goes into the run's
:class:`etl.tracking.Outcome`, which the recipe's tracking steps write.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import time
from typing import Any, Iterator, Mapping

from etl import progress, stop, tracking, watermark
from etl.blocks import (FIRST_BLOCK_ROWS, LONG_ROW_BYTES, PART_BYTES, Batch, Block, prefetch, read_batches, read_blocks,
                        read_long_values, resize)
from etl.db import execute, fetch_all, fetch_one
from etl.errors import PhaseError
from etl.faults import crash_point, drop_point
from etl.recipe import (LOAD_ID, BatchRead, BlockRead, Checkpoint, Chunked, Commit, CopyStream, DeleteFeed, Exec,
                        ExecRows, Note, Observe, PerBlock, Recipe, Retry, RunValue, Step, Track, Transfer, When)

log = logging.getLogger("etl.executor")


def run_phase(recipe: Recipe, conns: Mapping[str, Any], *, run_id: str, store: tracking.Store,
              tracked_on: str) -> tracking.Outcome:
    """One phase run of one table: its Outcome (the plan's warnings as its first notes, the run-history id
    taken first where the tracking database assigns it: it is the load id), the recipe run, and on any
    error the failure recorded by `store` on the `tracked_on` connection before the error goes on."""
    plan = recipe.plan
    outcome = tracking.Outcome(plan=plan, run_id=run_id, started_at=tracking.utc_now(), notes=list(plan.warnings))
    outcome.history_id = store.next_history_id(conns[tracked_on])
    log.debug("%s", plan.describe())  # the plan itself: --verbose, `etl render`, and the run history
    try:
        run(recipe, conns, outcome, values={LOAD_ID.name: outcome.history_id})
    except stop.Interrupted as exc:  # a signal: rolled back and recorded as such, not as a fault
        store.write_failure(conns[tracked_on], outcome, str(exc), status="interrupted")
        raise
    except Exception as exc:
        if stop.requested():  # the statement the stop request ended on the server (stop.cancel_on_stop)
            message = f"interrupted by {stop.signal_name()} ({type(exc).__name__}: {exc})"
            store.write_failure(conns[tracked_on], outcome, message, status="interrupted")
            raise stop.Interrupted(message) from exc
        try:
            store.write_failure(conns[tracked_on], outcome, f"{type(exc).__name__}: {exc}")
        except Exception as lost:  # the connection died with the run (a row too long for it): keep the cause
            log.warning("%s: the failure could not be recorded: %s: %s", plan.table, type(lost).__name__, lost)
        raise
    return outcome


def run(recipe: Recipe, conns: Mapping[str, Any], outcome: tracking.Outcome, *,
        values: Mapping[str, Any] | None = None) -> None:
    """Run every step of `recipe` in order. `conns`: connection by role; `values`: the RunValue binds."""
    Executor(recipe, conns, outcome, values or {}).run()


class Executor:
    def __init__(self, recipe: Recipe, conns: Mapping[str, Any], outcome: tracking.Outcome,
                 values: Mapping[str, Any]):
        self.recipe = recipe
        self.plan = recipe.plan
        self.conns = conns
        self.outcome = outcome
        self.values = dict(values)
        self.packet: int | None = None  # the writing server's max_allowed_packet, asked when a long row comes

    def run(self) -> None:
        for step in self.recipe.steps:
            self.step(step)

    # ------------------------------------------------------------ one step

    def refuse_warnings(self, step: Exec) -> None:
        """A value the statement cut or clamped (its warnings) fails the run before anything commits."""
        found = [r for r in fetch_all(self.conns[step.on], step.warnings) if str(r[0]).lower() != "note"]
        if found:
            raise PhaseError(f"table {self.plan.table}: {step.statement.name} did not take a value as it was "
                             f"({found[0][2]}); nothing of this block was written (a column changed at the "
                             "source during the run? the next run applies the change)")

    def step(self, step: Step, block: Block | Batch | None = None, read_conn: Any = None,
             extra: Mapping[Any, Any] | None = None) -> None:
        """Run one step; inside a block loop, `block` is the current block, `extra` its RunValues and
        `read_conn` the reading connection when this thread owns it (a fault point may drop it)."""
        if isinstance(step, Exec):
            conn = self.conns[step.on]
            with conn.cursor() as cur, _progress(step.progress, conn), stop.cancel_on_stop(_canceller(conn)):
                execute(cur, step.statement, self._resolve(step.params, extra))
                self._count_statement(step.counts, cur)
            if step.warnings is not None:
                self.refuse_warnings(step)
        elif isinstance(step, Chunked):
            self.chunked(step)
        elif isinstance(step, ExecRows):
            self.write_rows(step, block)
        elif isinstance(step, Retry):
            self.retry(step)
        elif isinstance(step, Observe):
            value = fetch_one(self.conns[step.on], step.statement, self._resolve(step.params, extra))[0]
            self.outcome.observe(step.column, watermark.typed(value, step.kind))
        elif isinstance(step, Note):
            self.note(step.text, step.log)
        elif isinstance(step, When):
            if fetch_one(self.conns[step.on], step.check)[0]:
                for inner in step.then:
                    self.step(inner)
            else:
                self.note(step.otherwise)
        elif isinstance(step, Transfer):
            self.transfer(step)
        elif isinstance(step, Checkpoint):
            step.writer.write(self.conns[step.on], self.outcome, status="running")
        elif isinstance(step, Track):
            if step.fault:
                crash_point(step.fault)
            step.writer.write(self.conns[step.on], self.outcome)
        elif isinstance(step, Commit):
            if step.fault_before:
                crash_point(step.fault_before)
            self.conns[step.on].commit()
            if step.fault_after:
                crash_point(step.fault_after, read_conn)
        elif isinstance(step, DeleteFeed):
            self.delete_feed(step)
        else:
            raise TypeError(f"unknown step {step!r}")

    def write_rows(self, step: ExecRows, batch: Block | Batch) -> int:
        """The rows of a batch, once per row; returns how many of them were written (not rejected)."""
        rows, long = batch.values, []
        if step.packet is not None:
            rows, long = self.fits_packet(step, batch)
        sql, _ = step.statement.to_dbapi(dict.fromkeys(step.names))
        written = 0
        with self.conns[step.on].cursor() as cur:
            if rows:
                cur.executemany(sql, [dict(zip(step.names, row)) for row in rows])
                self._count(step.counts, max(cur.rowcount, 0))
                written += len(rows)
            for row in long:
                if self.write_in_parts(step, cur, sql, row):
                    self._count(step.counts, 1)
                    written += 1
        return written

    def retry(self, step: Retry) -> None:
        """The table's rejected rows, each read again by its key alone and written like a batch row. Moved:
        its entry is marked so in the same transaction (the load reloads the table, then forgets it). Still
        too long: recorded again (write_in_parts). Gone at the source: forgotten (deletes are the deletion
        log's and reconcile's). One short read per row, each row committed on its own."""
        write_conn, read = self.conns[step.write.on], self.conns[step.read_on]
        rejected = step.rejects.rows(write_conn)
        if not rejected:
            return
        limit = int(_text(fetch_one(read, step.packet)[0]))
        key_at = tuple([c.name for c in self.plan.columns].index(k) for k in self.plan.key)
        moved = gone = 0
        for key, *_ in rejected:
            binds = {f"r{i}": v for i, v in enumerate(key)}
            if step.long_values:
                binds["long_row"] = min(LONG_ROW_BYTES, limit // 4)
            got = fetch_one(read, step.row.get(), binds)
            if got is not None and step.long_values:
                got = tuple(got[:-1]) if not int(got[-1]) else read_long_values(read, tuple(got[:-1]), key_at,
                                                                                step.long_values, limit)
            read.commit()  # no read transaction outlives the row
            if got is None:
                with write_conn.cursor() as cur:
                    step.rejects.forget(cur, key)
                gone += 1
                continue
            if self.write_rows(step.write, Batch(rows=1, maxima=(), values=[tuple(got)])):
                with write_conn.cursor() as cur:
                    step.rejects.mark_moved(cur, key)  # until the load took it (its watermark is past it)
                moved += 1
            write_conn.commit()
        write_conn.commit()
        self.note(f"rejected rows retried: {moved} moved, {gone} gone at the source, "
                  f"{len(rejected) - moved - gone} still rejected", "info" if moved or gone else None)

    def fits_packet(self, step: ExecRows, batch: Batch) -> tuple[list[tuple], list[tuple]]:
        """The batch's rows that fit in one statement, and those too long for one (the server would just
        close the connection): written in parts (:meth:`write_in_parts`), or without a way to, the table
        fails naming the row and the setting. Short batches never ask the server."""
        if max(map(_row_bytes, batch.values), default=0) < 1 << 20:
            return batch.values, []
        if self.packet is None:
            self.packet = int(_text(fetch_one(self.conns[step.on], step.packet)[0]))
        fits, long = [], []
        for row in batch.values:
            size = _row_bytes(row)
            # With parts, well below the limit: the server refused a 17 MiB row of text and binary (its
            # binary escaped) at 32 MiB. Without, escaping and the statement around the values.
            over = size * 4 > self.packet if step.parts is not None else size + (size >> 4) + (64 << 10) > self.packet
            (long if over else fits).append(row)
        if long and step.parts is None:
            size = _row_bytes(long[0])
            key = {c: long[0][i] for i, c in enumerate(c.name for c in self.plan.columns) if c in self.plan.key}
            raise PhaseError(f"{self.plan.table}: the row {key} holds {size:,} bytes, more than the {step.on}'s "
                             f"max_allowed_packet ({self.packet:,}) allows in one statement; raise max_allowed_packet "
                             f"on the {step.on}, or turn local_infile on there (that path loads long values without "
                             f"this limit)")
        return fits, long

    def write_in_parts(self, step: ExecRows, cur: Any, sql: str, row: tuple) -> bool:
        """A row longer than a quarter of the server's max_allowed_packet, in the batch's transaction: the
        statement with its long values empty (NULL stays NULL), then each value appended in parts of at most
        an eighth of the limit and 4 MiB (escaping may double a part). A single value longer than the limit
        is rejected (recorded, nothing of the row written, False) or without `step.rejects` fails the table
        naming it: the server builds no value longer than max_allowed_packet from a statement (CONCAT and
        GROUP_CONCAT stop there); LOAD DATA does."""
        parts = step.parts
        budget = max(1, min(PART_BYTES // 2, self.packet // 8))
        held = dict(parts.values)
        columns = [c.name for c in self.plan.columns]
        for position in held:
            size = _row_bytes((row[position],))
            if size > self.packet:
                key = {columns[i]: row[i] for i in parts.key}
                message = (f"{self.plan.table}: the value of {columns[position]} in the row {key} holds "
                           f"{size:,} bytes, more than the {step.on}'s max_allowed_packet ({self.packet:,}); "
                           f"MySQL builds no longer value from a statement: raise max_allowed_packet on the "
                           f"{step.on} above it")
                if step.rejects is None:
                    raise PhaseError(f"{message}, or turn local_infile on there (LOAD DATA has no such limit)")
                # Recorded in the batch's transaction and skipped: the rest of the table goes on, and
                # every run tries the row again (Retry) until the setting is raised.
                step.rejects.record(cur, tuple(row[i] for i in parts.key), columns[position], size,
                                    f"max_allowed_packet on the {step.on} ({self.packet:,} bytes)", message)
                self.note(f"row {key} rejected: its {columns[position]} holds {size:,} bytes, more than the "
                          f"{step.on}'s max_allowed_packet ({self.packet:,})", "warning")
                return False
        cur.execute(sql, dict(zip(step.names, (v[:0] if i in held and v is not None else v
                                               for i, v in enumerate(row)))))
        key = {f"r{j}": row[i] for j, i in enumerate(parts.key)}
        for position, append in parts.values:
            for part in _parts(row[position], budget):
                execute(cur, append.get(), dict(key, part=part))
        return True

    def _count_statement(self, counts: tuple[str, ...], cur: Any) -> None:
        """A statement's rows: written = what it changed (an upsert's affected rows count an update twice),
        read = what it was given, where the server says (_rows_changed)."""
        changed, records = _rows_changed(cur)
        for counter in counts:
            self._count((counter,), records if counter == "rows_read" and records is not None else changed)

    def note(self, text: str, level: str | None = None) -> None:
        self.outcome.notes.append(text)
        if level:
            log.log(logging.getLevelName(level.upper()), "%s: %s", self.plan.table, text)

    def _count(self, counters: tuple[str, ...], rows: int) -> None:
        for counter in counters:
            setattr(self.outcome, counter, getattr(self.outcome, counter) + rows)

    def _resolve(self, params: Mapping[str, Any], extra: Mapping[Any, Any] | None = None) -> dict[str, Any]:
        out = {}
        for name, value in params.items():
            if isinstance(value, RunValue):
                value = extra[value] if extra and value in extra else self.values[value.name]
            out[name] = value
        return out

    def _account(self, block: Block | Batch) -> None:
        """A block read (and, in a block loop, written): its rows and the watermark values it holds."""
        self.outcome.rows_read += block.rows
        self.outcome.values_adjusted += block.adjusted
        for bound, value in zip(self.plan.bounds, block.maxima):
            self.outcome.observe(bound.column, value)

    def chunked(self, step: Chunked) -> None:
        """A statement over a table in chunks of its primary key (recipe.Chunked): each chunk's last key is
        found first, so chunks never overlap and the last runs to the end of the table; the chunk's keys
        follow the time the last chunk's two statements took. Nothing commits here: the phase's own commit,
        after its tracking, makes every chunk's rows visible at once (a crash leaves none)."""
        conn = self.conns[step.on]
        params = self._resolve(step.params)
        after, keys = None, FIRST_BLOCK_ROWS
        with _progress(step.progress, conn), conn.cursor() as cur, stop.cancel_on_stop(_canceller(conn)):
            while True:
                stop.check(f"{self.plan.phase} {self.plan.table}")  # a safe point: between two chunks
                keyset = {} if after is None else {f"k{i}": v for i, v in enumerate(after)}
                started = time.monotonic()
                found = fetch_one(conn, step.boundary.get(after is not None), dict(keyset, offset=keys - 1))
                upto = None if found is None else tuple(watermark.typed(v, k) for v, k in zip(found, step.kinds))
                bounds = dict(params, **keyset, **({} if upto is None else {f"u{i}": v for i, v in enumerate(upto)}))
                execute(cur, step.statement.get(after is not None, upto is not None), bounds)
                self._count_statement(step.counts, cur)
                if upto is None:
                    return
                after, keys = upto, resize(keys, time.monotonic() - started, step.seconds)

    # ------------------------------------------------------------ transfers

    def transfer(self, step: Transfer) -> None:
        read, plan = step.read, self.plan
        conn = self.conns[read.on]
        params = self._resolve(read.params)
        if isinstance(read, BlockRead):
            def between() -> None:  # in the prefetch thread, which alone uses `conn` while blocks are read
                conn.commit()  # no read transaction spans two blocks
                drop_point(read.fresh_reads, conn)

            # From here until `chunks` is closed, the prefetch thread alone uses the reading connection.
            chunks: Iterator[Any] = prefetch(read_blocks(
                conn, plan, read.boundary.get, read.block.get, params, session=read.session,
                max_rows=plan.batch_size, between=between if read.fresh_reads else None,
                start_after=read.start_after, target_seconds=read.seconds, long_rows=read.long_rows))
            owned = None
        else:
            limit = int(_text(fetch_one(conn, read.packet)[0])) if read.packet is not None else None
            chunks = read_batches(conn, plan, read.batch.get, params, between=conn.commit if read.fresh_reads else None,
                                  start_after=read.start_after, target_seconds=read.seconds,
                                  long_values=read.long_values, limit=limit)
            owned = conn
        adjusted_before = self.outcome.values_adjusted
        try:
            first = next(chunks, None)
            if first is None:  # nothing to move: no setup, no sink, no finish
                return
            for inner in step.setup:
                self.step(inner)
            with progress.track(step.label, estimate=step.estimate) as bar:
                every = itertools.chain([first], chunks)
                if isinstance(step.sink, CopyStream):
                    self.stream(step.sink, every, bar)
                else:
                    self.per_block(step.sink, every, bar, owned)
            for inner in step.finish:
                self.step(inner)
        except Exception as exc:
            if isinstance(read, BatchRead) and _packet_error(exc):
                raise PhaseError(f"{plan.table}: a row longer than max_allowed_packet of the source or the replica "
                                 f"(rows copied before it: {self.outcome.rows_read}); raise max_allowed_packet on "
                                 f"both servers, or turn local_infile on at the replica (that path reads long "
                                 f"values in parts)") from None
            raise
        finally:
            chunks.close()
        adjusted = self.outcome.values_adjusted - adjusted_before
        if adjusted:
            self.note(f"{adjusted} values adjusted (zero dates to NULL, NUL bytes removed)")

    def stream(self, sink: CopyStream, blocks: Iterator[Block], bar: progress.Tracker) -> None:
        """Every block into one COPY: the text goes straight from the reader to the driver."""
        start = self.outcome.rows_read

        def text() -> Iterator[bytes]:
            for block in blocks:
                self._account(block)
                bar.advance(block.rows)
                yield block.data
                yield b"\n"  # the last line's end (not joined to the block: no copy of megabytes)
                stop.check(f"{self.plan.phase} {self.plan.table}")  # the COPY is abandoned, its transaction rolled back
                if sink.fault:
                    crash_point(sink.fault)

        with self.conns[sink.on].cursor() as cur:
            sink.feed(cur, sink.statement, text())
        self._count(sink.counts, self.outcome.rows_read - start)

    def per_block(self, sink: PerBlock, chunks: Iterator[Block | Batch], bar: progress.Tracker,
                  read_conn: Any) -> None:
        writes = [s for s in itertools.takewhile(lambda s: not isinstance(s, (Checkpoint, Commit)), sink.steps)]
        rest = sink.steps[len(writes):]
        files = sink.files() if sink.files is not None else contextlib.nullcontext(None)
        with files as write_file:
            for chunk in chunks:
                extra = {} if write_file is None else {sink.file_value: write_file(chunk.data)}
                for inner in writes:
                    self.step(inner, chunk, read_conn, extra)
                self._account(chunk)
                bar.advance(chunk.rows)
                for inner in rest:
                    self.step(inner, chunk, read_conn, extra)
                stop.check(f"{self.plan.phase} {self.plan.table}")  # a safe point: the block is done

    # ------------------------------------------------------------ the deletedobject feed

    def delete_feed(self, step: DeleteFeed) -> None:
        """Delete, in the writing connection's open transaction, the logged keys that are gone upstream;
        the feed's watermark moves to the last log entry read."""
        read, write = self.conns[step.read_on], self.conns[step.write_on]
        after = tracking.read_feed(write, step.state[0], step.table)
        deleted = 0
        while True:
            rows = fetch_all(read, step.log, {"object_type": step.object_type, "after": after, "batch_size": step.batch})
            if not rows:
                break
            after = int(rows[-1][0])
            keys = sorted({int(r[1]) for r in rows})
            still_there = {int(r[0]) for r in fetch_all(read, step.existing, {"keys": step.read_keys(keys)})}
            gone = [k for k in keys if k not in still_there]
            if gone:
                with write.cursor() as cur:
                    execute(cur, step.delete, {"keys": step.write_keys(gone)})
                    deleted += max(cur.rowcount, 0)
                if step.record is not None:
                    tracking.record_deletes(write, step.record, step.table, step.key_column, gone,
                                            load_id=self.values[LOAD_ID.name], source="deletedobject")
            if len(rows) < step.batch:
                break
        tracking.save_feed(write, step.state[1], step.table, after)
        self.note(f"{deleted} rows deleted (deletedobject feed)")


_UPSERT_INFO = re.compile(r"Records:\s*(\d+)\s+Duplicates:\s*(\d+)")


def _rows_changed(cur: Any) -> tuple[int, int | None]:
    """Rows a statement changed, and the rows it was given when the server says (else None).

    MySQL's affected-rows count of INSERT ... ON DUPLICATE KEY UPDATE is 1 per inserted row, 2 per
    updated row and 0 per unchanged one: 400 for a 200-row update. Its info line ("Records: R
    Duplicates: D") counts in D the rows it updated (MySQL and MariaDB alike: an unchanged duplicate is
    not counted), so affected - D rows changed; the other R - (affected - D) were read again and left as
    they were."""
    rows = max(cur.rowcount, 0)
    message = getattr(getattr(cur, "_result", None), "message", None)
    if message:
        found = _UPSERT_INFO.search(message.decode(errors="replace") if isinstance(message, bytes) else str(message))
        if found:
            records, duplicates = int(found.group(1)), int(found.group(2))
            return max(rows - duplicates, 0), records
    return rows, None


def _canceller(conn: Any):
    """How a stop request ends the statement running on `conn`: PostgreSQL cancels from any thread
    (psycopg2's cancel), MySQL takes a KILL QUERY from a connection of its own."""
    if hasattr(conn, "cancel"):
        return conn.cancel
    if hasattr(conn, "thread_id") and hasattr(conn, "host"):
        from etl.dialects import mysql
        return lambda: mysql.kill_query(conn)
    return None


@contextlib.contextmanager
def _progress(label: str | None, conn: Any = None):
    """The progress line of a long single statement: rows written so far where the server says (MySQL:
    its InnoDB transaction's count), else the time elapsed."""
    if not label:
        yield None
        return
    poll = None
    if hasattr(conn, "thread_id") and hasattr(conn, "host"):
        from etl.dialects import mysql
        poll = mysql.StatementProgress(conn)
    try:
        with progress.track(label, counts_rows=False, poll=poll) as tracker:
            yield tracker
    finally:
        if poll is not None:
            poll.close()


def _row_bytes(row: tuple) -> int:
    """The bytes a row's text and binary values take on the wire (text as utf8mb4)."""
    return sum((len(v) if v.isascii() else len(v.encode())) if isinstance(v, str) else len(v)
               for v in row if isinstance(v, (str, bytes, bytearray)))


def _parts(value: Any, budget: int) -> Iterator[Any]:
    """A long value in pieces of at most `budget` bytes, each cut on a character boundary: text by
    characters (at most 4 bytes each in utf8mb4), bytes before a UTF-8 continuation byte (a column's own
    bytes: any cut of a single-byte character set is one too)."""
    if not value:
        return
    if isinstance(value, str):
        step = budget if value.isascii() else max(1, budget // 4)
        for start in range(0, len(value), step):
            yield value[start:start + step]
        return
    start = 0
    while start < len(value):
        end = min(start + budget, len(value))
        back = 0
        while end < len(value) and back < 3 and end - 1 > start and 0x80 <= value[end] < 0xC0:
            end, back = end - 1, back + 1
        yield value[start:end]
        start = end


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)


def _packet_error(exc: BaseException) -> bool:
    """Batches of rows are MySQL to MySQL: a row longer than max_allowed_packet cannot be read or written
    whole, and the server just closes the connection."""
    from etl.dialects import mysql

    return mysql.is_packet_error(exc)
