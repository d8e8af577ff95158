"""The one reader and writer of the tracking tables: status rows, per-column watermarks, run history.

Two stores, one per database the pipeline tracks in:

* the replica (MySQL): ``etl_copy_status``, ``etl_copy_column_status``, ``etl_run_history`` (copy, and the
  replica half of reconcile), and ``etl_copy_rejects`` (rows the copy could not move, retried every run);
* the analytics database (schema raw): ``etl_load_status``, ``etl_load_column_status``,
  ``etl_transform_status``, ``etl_run_history`` (load, transform, the raw half of reconcile), and
  ``etl_deleted_keys`` (what the load and reconcile deleted from raw, for the dbt models).

A store renders its statements through its database's dialect (``<phase>_status_upsert``,
``run_history_insert`` ...: the same names in every dialect folder that hosts the phase) and writes them
inside the caller's open transaction, the one that writes the data they describe; only a failure is
recorded in a transaction of its own. Every other module that records a run (the phases through a
recipe's checkpoint and tracking steps, transform, reconcile, init-tracking) goes through here.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Iterable

from etl import watermark
from etl.db import execute, fetch_all, fetch_one
from etl.dialects import for_url, mysql
from etl.plan import Plan, StoredState
from etl.render import Statement
from etl.settings import Settings

log = logging.getLogger("etl.tracking")

#: Where each phase's status rows live.
PHASE_SIDE = {"copy": "replica", "load": "analytics", "transform": "analytics"}
#: Status-row columns whose names carry the phase (the tables predate this module).
_STATUS_COLUMN = {"copy": "copy_status", "load": "load_status", "transform": "transformation_status"}
_ROWS_COLUMN = {"copy": "rows_copied", "load": "rows_loaded"}
#: The name under which a table's deletedobject feed keeps its own watermark in the column-status table.
FEED_COLUMN = "deletedobject.DeletedObjectNum"
#: Errors are stored up to this many characters.
ERROR_LIMIT = 4000


def utc_now() -> dt.datetime:
    """When a run started (informational: run history only; never a watermark)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class Store:
    """The tracking tables of one database: its dialect and where the tables are (the raw schema)."""

    side: str                      # replica | analytics
    dialect: ModuleType
    scope: dict[str, Any] = field(default_factory=dict)

    def statement(self, name: str) -> Statement:
        return self.dialect.render(name, **self.scope)

    # ------------------------------------------------------------ run history

    def next_history_id(self, conn: Any) -> int | None:
        """The id of the next run-history row, taken before any data moves where the dialect assigns
        them (PostgreSQL: it doubles as the load marker raw._etl_load_id); None where the database does."""
        if not self.dialect.ASSIGNS_HISTORY_IDS:
            return None
        # The sequence is found by the table's name, a value (the scope is not printed into this one).
        return fetch_one(conn, self.dialect.render("next_run_id"), {"history_table": self._history_table()})[0]

    def _history_table(self) -> str:
        schema = self.scope.get("schema")
        return f"{schema}.etl_run_history" if schema else "etl_run_history"

    def write_history(self, conn: Any, record: "History") -> None:
        """One run-history row, in the caller's transaction."""
        params = record.params()
        if self.dialect.ASSIGNS_HISTORY_IDS:
            params["id"] = record.id if record.id is not None else self.next_history_id(conn)
        with conn.cursor() as cur:
            execute(cur, self.statement("run_history_insert"), params)

    # ------------------------------------------------------------ copy and load: status and watermarks

    def read_state(self, conn: Any, phase: str, table: str) -> StoredState:
        row = fetch_one(conn, self.statement(f"{phase}_status_select"), {"table_name": table})
        columns = fetch_all(conn, self.statement(f"{phase}_column_status_select"), {"table_name": table})
        if row is None:
            return StoredState(column_values=dict(columns))
        return StoredState(status=row[0], primary_column_name=row[1], last_primary_value=row[2],
                           column_values=dict(columns))

    def writer(self, plan: Plan, *, final: bool) -> "Writer":
        """The statements that record a run of `plan`: a checkpoint (final=False) or its end."""
        phase = plan.phase
        return Writer(
            store=self, plan=plan,
            status=self.statement(f"{phase}_status_upsert"),
            clear=self.statement(f"{phase}_column_status_clear") if plan.strategy == "full" or not plan.fallback else None,
            columns=self.statement(f"{phase}_column_status_upsert") if plan.fallback else None,
            history=self.statement("run_history_insert") if final else None,
        )

    def write_failure(self, conn: Any, outcome: "Outcome", error: str, *, status: str = "failed") -> None:
        """In its own transaction: status failed (or interrupted: a signal stopped it), watermark kept, the
        error in the run history."""
        plan, phase = outcome.plan, outcome.plan.phase
        conn.rollback()
        with conn.cursor() as cur:
            execute(cur, self.statement(f"{phase}_status_mark"), {
                "table_name": plan.table, "primary_column_name": plan.primary.column if plan.primary else None,
                _STATUS_COLUMN[phase]: status,
            })
        self.write_history(conn, outcome.history(status=status, error=error))
        conn.commit()

    def write_unplanned_failure(self, conn: Any, phase: str, table: Any, run_id: str, started_at: dt.datetime,
                                error: str) -> None:
        """A run that failed before it had a plan (the table gone at the source, a configured column gone,
        a bad key): status failed and a run-history row, like any other failure, so `etl status` never
        keeps showing the previous success. In its own transaction; the watermark is kept."""
        conn.rollback()
        primary = table.primary_incremental_column
        with conn.cursor() as cur:
            execute(cur, self.statement(f"{phase}_status_mark"), {
                "table_name": table.name, "primary_column_name": primary, _STATUS_COLUMN[phase]: "failed",
            })
        self.write_history(conn, History(run_id=run_id, phase=phase, table=table.name, started_at=started_at,
                                         status="failed", primary_column_name=primary, error=error))
        conn.commit()

    def record_unplanned(self, conn: Any, phase: str, table: Any, run_id: str, started_at: dt.datetime,
                         exc: Exception) -> None:
        """write_unplanned_failure for the exception a run raised before it had a plan; best effort (the
        tracking database may be what failed), the secrets of the message masked."""
        from etl.errors import EtlError, mask_secrets

        message = mask_secrets(str(exc) if isinstance(exc, EtlError) else f"{type(exc).__name__}: {exc}")
        try:
            self.write_unplanned_failure(conn, phase, table, run_id, started_at, message)
        except Exception:
            log.warning("%s: the failure could not be recorded in the tracking tables", table.name, exc_info=True)

    def feed_statements(self, phase: str) -> tuple[Statement, Statement]:
        """Reading and saving the deletedobject feed's watermark (a row of the column-status table)."""
        return self.statement(f"{phase}_column_status_select"), self.statement(f"{phase}_column_status_upsert")

    # ------------------------------------------------------------ rows the copy could not move

    def rejects(self, table: str) -> "Rejects | None":
        """The rejected rows of one table (etl_copy_rejects); None where no phase rejects rows (analytics)."""
        if self.side != "replica":
            return None
        return Rejects(table, self.statement("copy_rejects_select"), self.statement("copy_rejects_upsert"),
                       self.statement("copy_rejects_delete"), self.statement("copy_rejects_moved"),
                       self.statement("copy_rejects_moved_select"), self.statement("copy_rejects_loaded"))

    def all_rejects(self, conn: Any) -> dict[str, list[tuple]]:
        """table -> its rejected rows as Rejects.rows gives them (without the error and times)."""
        out: dict[str, list[tuple]] = {}
        for table, key, *rest in fetch_all(conn, self.statement("copy_rejects_all")):
            out.setdefault(_str(table), []).append((tuple(json.loads(_str(key))), *map(_str, rest)))
        return out

    # ------------------------------------------------------------ deletes, for the models built on raw

    def deletes_statement(self) -> Statement | None:
        """Recording the keys a run deleted (raw.etl_deleted_keys); None on the replica, whose deletes no
        model reads."""
        return self.statement("deleted_keys_insert") if self.side == "analytics" else None

    def record_deletes(self, conn: Any, table: str, key_column: str, keys: list[int], *, load_id: int,
                       source: str) -> None:
        """In the caller's transaction (the one that deleted the rows)."""
        statement = self.deletes_statement()
        if statement is not None:
            record_deletes(conn, statement, table, key_column, keys, load_id=load_id, source=source)

    # ------------------------------------------------------------ every phase: init-tracking and status

    def init_rows(self, conn: Any, phase: str, tables: Iterable[Any]) -> int:
        """A pending status row for each table that has none; returns how many were created."""
        created = 0
        statement = self.statement(f"{phase}_status_init")
        with conn.cursor() as cur:
            for table in tables:
                execute(cur, statement, {"table_name": table.name,
                                         "primary_column_name": table.primary_incremental_column})
                created += max(cur.rowcount, 0)
        return created

    def all_rows(self, conn: Any, phase: str) -> dict[str, tuple]:
        """table -> (table, status, primary column, last value, rows, last run)."""
        return {r[0]: r for r in fetch_all(conn, self.statement(f"{phase}_status_all"))}

    # ------------------------------------------------------------ etl history and etl status

    def history_rows(self, conn: Any, *, table: str | None, phase: str | None, since: dt.datetime,
                     limit: int) -> list[tuple]:
        """Run-history rows, newest first: (id, phase, table, strategy, status, watermark_before,
        watermark_after, rows_read, rows_written, notes, error, started_at, finished_at)."""
        params: dict[str, Any] = {"since": since, "limit": limit}
        if table:
            params["table_name"] = table
        if phase:
            params["phase"] = phase
        return fetch_all(conn, self.dialect.render("run_history_select", by_table=bool(table), by_phase=bool(phase),
                                                   **self.scope), params)

    def history_summary(self, conn: Any) -> list[tuple]:
        """(table, phase, status, latest start, its rows written, its error, rows written by all such runs)."""
        return fetch_all(conn, self.statement("run_history_summary"))

    # ------------------------------------------------------------ transform

    def transform_state(self, conn: Any, table: str) -> tuple:
        """(last load committed, last load transformed, last_primary_value, primary_column_name, status)."""
        return fetch_one(conn, self.statement("transform_state_select"), {"table_name": table})

    def transform_recorded(self, conn: Any, table: str) -> tuple | None:
        """What the dbt post-hook wrote: (status, last_primary_value, primary_column_name, rows, last_load_id)."""
        return fetch_one(conn, self.statement("transform_status_select"), {"table_name": table})

    def mark_transform(self, conn: Any, table: str, *, status: str, primary_column_name: str | None,
                       last_primary_value: str | None, last_load_id: int | None) -> None:
        """A table whose transform failed or was skipped: its status and the state it had at the start."""
        with conn.cursor() as cur:
            execute(cur, self.statement("transform_status_mark"), {
                "table_name": table, "primary_column_name": primary_column_name,
                "last_primary_value": last_primary_value, "last_load_id": last_load_id,
                "transformation_status": status,
            })


def read_feed(conn: Any, select: Statement, table: str) -> int:
    """The deletedobject feed's watermark of a table (Store.feed_statements), 0 before its first run."""
    stored = dict(fetch_all(conn, select, {"table_name": table})).get(FEED_COLUMN)
    return int(stored) if stored else 0


def save_feed(conn: Any, upsert: Statement, table: str, value: int) -> None:
    with conn.cursor() as cur:
        execute(cur, upsert, {"table_name": table, "column_name": FEED_COLUMN, "last_value": str(value)})


#: Keys recorded per statement.
DELETES_BATCH = 5000


def record_deletes(conn: Any, insert: Statement, table: str, key_column: str, keys: list[int], *, load_id: int,
                   source: str) -> None:
    """Keys deleted from raw.<table> by the run `load_id` (source: reconcile | deletedobject), recorded in the
    caller's open transaction (Store.deletes_statement)."""
    with conn.cursor() as cur:
        for i in range(0, len(keys), DELETES_BATCH):
            execute(cur, insert, {"table_name": table, "key_column": key_column, "keys": list(keys[i:i + DELETES_BATCH]),
                                  "load_id": load_id, "source": source})


def store(settings: Settings, side: str) -> Store:
    """The store of the replica or of the analytics database."""
    if side == "replica":
        return Store("replica", mysql, mysql.scope(settings.raw_schema))
    dialect = for_url(settings.analytics_url)
    return Store("analytics", dialect, dialect.scope(settings.raw_schema))


def for_phase(settings: Settings, phase: str) -> Store:
    return store(settings, PHASE_SIDE[phase])


def record_refused(settings: Settings, phase: str, refused: dict[Any, str], run_id: str) -> list[str]:
    """Tables a run refused before any data moved (a configured column gone at the source): each one that
    already has a tracking row for `phase` is marked failed with the error in its run history, so `etl
    status` never keeps showing its last success. A table without one (a new entry, a typo) is left
    untouched: bad input writes nothing. Best effort (tracking not migrated yet: nothing recorded).
    Returns the tables recorded."""
    side = PHASE_SIDE[phase]
    url = settings.replica_url if side == "replica" else settings.analytics_url
    target = store(settings, side)
    started = utc_now()
    try:
        conn = target.dialect.connect(url, role=side)
    except Exception:
        return []
    try:
        known = target.all_rows(conn, phase)
        recorded = []
        for table, error in refused.items():
            if table.name in known:
                target.write_unplanned_failure(conn, phase, table, run_id, started, error)
                recorded.append(table.name)
        return recorded
    except Exception:
        conn.rollback()
        return []
    finally:
        conn.close()


@dataclass(frozen=True)
class History:
    """One run-history row."""

    run_id: str
    phase: str
    table: str
    started_at: dt.datetime
    status: str
    strategy: str | None = None
    primary_column_name: str | None = None
    watermark_before: str | None = None
    watermark_after: str | None = None
    rows_read: int = 0
    rows_written: int = 0
    values_adjusted: int = 0
    notes: str | None = None
    error: str | None = None
    id: int | None = None

    def params(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "phase": self.phase, "table_name": self.table, "strategy": self.strategy,
            "status": self.status, "primary_column_name": self.primary_column_name,
            "watermark_before": self.watermark_before, "watermark_after": self.watermark_after,
            "rows_read": self.rows_read, "rows_written": self.rows_written, "values_adjusted": self.values_adjusted,
            "notes": self.notes, "error": self.error[:ERROR_LIMIT] if self.error else self.error,
            "started_at": self.started_at,
        }


@dataclass
class Outcome:
    """What one phase run of one table did; becomes the tracking row and the run-history row."""

    plan: Plan
    run_id: str
    started_at: dt.datetime
    rows_read: int = 0
    rows_written: int = 0
    values_adjusted: int = 0
    new_values: dict[str, Any] = field(default_factory=dict)   # column -> new watermark (typed)
    notes: list[str] = field(default_factory=list)
    history_id: int | None = None
    rejected: list[str] = field(default_factory=list)          # copy: a line per row still rejected after it

    def watermark_after(self, column: str) -> Any:
        """The new watermark of a column: the largest admissible value read, or the old one."""
        bound = next(b for b in self.plan.bounds if b.column == column)
        return watermark.later(bound.lower, self.new_values.get(column))

    def observe(self, column: str, value: Any) -> None:
        bound = next(b for b in self.plan.bounds if b.column == column)
        if bound.admits(value):
            self.new_values[column] = watermark.later(self.new_values.get(column), value)

    def history(self, *, status: str, error: str | None = None, watermark_after: str | None = None) -> History:
        plan = self.plan
        return History(
            run_id=self.run_id, phase=plan.phase, table=plan.table, started_at=self.started_at, status=status,
            strategy=plan.strategy, primary_column_name=plan.primary.column if plan.primary else None,
            watermark_before=_describe_watermarks(plan, {b.column: b.lower for b in plan.bounds}),
            watermark_after=watermark_after, rows_read=self.rows_read, rows_written=self.rows_written,
            values_adjusted=self.values_adjusted, notes="; ".join(self.notes) or None, error=error,
            id=self.history_id,
        )


def _describe_watermarks(plan: Plan, values: dict[str, Any]) -> str | None:
    if plan.primary is not None:
        return watermark.format(values.get(plan.primary.column))
    if not plan.fallback:
        return None
    return ", ".join(f"{b.column}={watermark.format(values.get(b.column))}" for b in plan.fallback)


@dataclass(frozen=True)
class Writer:
    """The tracking one phase run of one table writes, rendered once (a recipe's checkpoint and tracking
    steps print these statements and run them): its status row, its per-column watermarks (OR fallback;
    cleared otherwise), and, at the end, its run-history row."""

    store: Store
    plan: Plan
    status: Statement
    clear: Statement | None
    columns: Statement | None
    history: Statement | None

    @property
    def statements(self) -> tuple[Statement, ...]:
        return tuple(s for s in (self.status, self.clear, self.columns, self.history) if s is not None)

    def write(self, conn: Any, outcome: Outcome, *, status: str = "success") -> None:
        """Tracking (and, with a history statement, run history) for data written in the current
        transaction of `conn`."""
        plan, phase = self.plan, self.plan.phase
        after = {b.column: outcome.watermark_after(b.column) for b in plan.bounds}
        with conn.cursor() as cur:
            primary = plan.primary
            execute(cur, self.status, {
                "table_name": plan.table,
                "last_primary_value": watermark.format(after[primary.column]) if primary else None,
                "primary_column_name": primary.column if primary else None,
                _ROWS_COLUMN[phase]: outcome.rows_written,
                _STATUS_COLUMN[phase]: status,
            })
            if self.clear is not None:
                execute(cur, self.clear, {"table_name": plan.table})
            for bound in plan.fallback:
                execute(cur, self.columns, {
                    "table_name": plan.table, "column_name": bound.column,
                    "last_value": watermark.format(after[bound.column]),
                })
            if self.history is not None:
                record = outcome.history(status=status, watermark_after=_describe_watermarks(plan, after))
                params = record.params()
                if self.store.dialect.ASSIGNS_HISTORY_IDS:
                    params["id"] = outcome.history_id
                execute(cur, self.history, params)


def key_text(values: tuple) -> str:
    """A row's primary-key values as etl_copy_rejects keeps them: a JSON array of their text (the copy's
    reads give text, the key binds take it back as it is)."""
    return json.dumps([v.decode() if isinstance(v, (bytes, bytearray)) else v for v in values], default=str)


@dataclass(frozen=True)
class Rejects:
    """The rows of one table the copy could not move (a value longer than the replica builds from a
    statement): recorded in the transaction of the batch that skipped them, so the watermark goes past
    them and the rest of the table flows; read again by key at the start of every copy run of the table
    and marked moved in the transaction that wrote them; the load, whose watermark is past them, reloads
    the table while any are marked and then forgets them."""

    table: str
    select: Statement
    upsert: Statement
    delete: Statement
    moved: Statement
    moved_select: Statement
    loaded: Statement

    def rows(self, conn: Any) -> list[tuple]:
        """(key values, column, size in bytes, setting, error, first seen, last tried) per rejected row."""
        return [(tuple(json.loads(_str(r[0]))),) + tuple(map(_str, r[1:]))
                for r in fetch_all(conn, self.select, {"table_name": self.table})]

    def record(self, cur: Any, key: tuple, column: str, size: int, setting: str, error: str) -> None:
        execute(cur, self.upsert, {"table_name": self.table, "key_value": key_text(key), "column_name": column,
                                   "size_bytes": size, "setting": setting, "error": error[:ERROR_LIMIT],
                                   "tried": utc_now()})

    def forget(self, cur: Any, key: tuple) -> None:
        """A rejected row gone at the source."""
        execute(cur, self.delete, {"table_name": self.table, "key_value": key_text(key)})

    def mark_moved(self, cur: Any, key: tuple) -> None:
        execute(cur, self.moved, {"table_name": self.table, "key_value": key_text(key), "tried": utc_now()})

    def moved_keys(self, conn: Any) -> list[str]:
        """The moved rows the load has not taken yet (their key text)."""
        return [_str(r[0]) for r in fetch_all(conn, self.moved_select, {"table_name": self.table})]

    def forget_loaded(self, cur: Any, keys: list[str]) -> None:
        for key in keys:
            execute(cur, self.loaded, {"table_name": self.table, "key_value": key})


def describe_reject(table: str, row: tuple) -> str:
    """One line naming a rejected row: table, key, column, size and the setting to raise."""
    key, column, size, setting = row[:4]
    return (f"copy {table}: the row with key {list(key)} was not copied: its value of {column} holds {int(size):,} "
            f"bytes; raise {setting} above it (retried on every run)")


def _str(value: Any) -> Any:
    """Text a raw-text connection hands back as bytes."""
    return value.decode() if isinstance(value, (bytes, bytearray)) else value
