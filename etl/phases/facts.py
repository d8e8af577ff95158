"""The read-only questions a phase asks before it plans: the horizon, the state of its target, where a
crowded watermark second resumes, schema drift. Both phases ask them; `etl render` asks them too, so it
prints exactly the recipe a run would follow. Nothing here writes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Sequence

from etl import watermark
from etl.config import TableConfig
from etl.db import fetch_one
from etl.dialects import mysql
from etl.plan import RESCAN_LIMIT, Horizon, Plan, StoredState, watermark_resume
from etl.render import Ident
from etl.schema import Column, TableSchema

#: What a phase finds where it writes: no table yet, a table without rows, a table with rows.
NEW, EMPTY, POPULATED = "new", "empty", "populated"


def watermark_candidates(config: TableConfig, schema: TableSchema) -> list[Column]:
    """Configured incremental columns that exist and are orderable (make_plan reports the others)."""
    names = [config.primary_incremental_column] if config.primary_incremental_column else []
    names += list(config.incremental_columns)
    return [schema.column(n) for n in dict.fromkeys(names) if schema.has_column(n) and schema.column(n).orderable]


@dataclass(frozen=True)
class Drift:
    """How the upstream definition differs from the phase's target (see :func:`drift`)."""

    added: tuple[Column, ...] = ()      # upstream columns the target lacks
    widened: tuple[Column, ...] = ()    # retyped upstream so every target value still fits: altered in place
    narrowed: tuple[Column, ...] = ()   # retyped so a value could be cut or converted: only a full refresh
    notes: tuple[str, ...] = ()         # dropped upstream (kept in the target) and narrowed, for the run's notes
    target_types: dict[str, str] = field(default_factory=dict)

    def refresh_reason(self, where: str) -> str | None:
        """Why a populated target is refreshed in full: its existing rows have no value for an added column
        (incremental reads never revisit them)."""
        if not self.added:
            return None
        names = ", ".join(c.name for c in self.added)
        return f"column{'s' if len(self.added) > 1 else ''} {names} added {where}"

    def refusal(self, table: str, upstream: str, target: str) -> str:
        """The one-line error of a narrowing change outside a full refresh (nothing is written)."""
        changes = ", ".join(f"{c.name} {self.target_types[c.name]} -> {c.column_type}" for c in self.narrowed)
        return (f"table {table}: {upstream} narrowed or changed the type of {changes}; {target} was left as it "
                f"was (altering it could cut values): rebuild it with `etl run --full {table}`")


def drift(upstream: TableSchema, target_types: dict[str, str], change: Callable[[Column, str], str]) -> Drift:
    """Columns to add to the target, columns retyped upstream (`change(column, target_type)`: 'same', 'wider'
    or 'narrower', the dialect's judgement), and notes about columns dropped upstream (never applied)."""
    added = tuple(c for c in upstream.columns if c.name not in target_types)
    widened, narrowed, notes = [], [], []
    upstream_names = set(upstream.column_names)
    for name, target_type in target_types.items():
        if name.startswith("_etl_"):
            continue
        if name not in upstream_names:
            notes.append(f"column {name!r} no longer exists upstream; kept in the target (nothing is dropped "
                         "in place; a full refresh of the replica rebuilds it from the source definition)")
            continue
        kind = change(upstream.column(name), target_type)
        if kind == "wider":
            widened.append(upstream.column(name))
        elif kind == "narrower":
            narrowed.append(upstream.column(name))
            notes.append(f"column {name!r} is now {upstream.column(name).column_type} upstream but {target_type} "
                         "in the target: the full refresh rebuilds it")
    return Drift(added, tuple(widened), tuple(narrowed), tuple(notes), dict(target_types))


def target_state(conn: Any, dialect: ModuleType, scope: dict[str, Any], table: Ident, exists: bool) -> str:
    """NEW, EMPTY or POPULATED: what a phase finds where it writes (`scope`: where the table is)."""
    if not exists:
        return NEW
    empty = fetch_one(conn, dialect.render("table_is_empty", table=table, **scope))[0]
    return EMPTY if bool(int(empty)) else POPULATED


# ---------------------------------------------------------------- upper bounds

def floor_second(value: dt.datetime) -> dt.datetime:
    return value.replace(microsecond=0)


def capture_horizon(conn: Any, columns: Sequence[Column], database: str, table: str) -> Horizon:
    """Upper bounds from the MySQL server's own clock and data, captured before the read starts."""
    utc_now, local_now, oldest_trx = fetch_one(conn, mysql.render("horizon"))
    utc_now, local_now = _as_datetime(utc_now), _as_datetime(local_now)
    lag = dt.timedelta(0)
    if oldest_trx is not None:
        # A transaction open since then may still commit rows stamped with its own (older) time.
        lag = max(dt.timedelta(0), utc_now - _as_datetime(oldest_trx))
    integer_max: dict[str, int | None] = {}
    for column in columns:
        if column.watermark_kind == "integer":
            value = fetch_one(conn, mysql.render("max_value", database=Ident(database), table=Ident(table),
                                                 column=column.name))[0]
            integer_max[column.name] = watermark.typed(value, "integer")
    datetime_upper = floor_second(local_now - lag)
    return Horizon(
        timestamp_upper=floor_second(utc_now - lag),
        datetime_upper=datetime_upper,
        date_upper=datetime_upper.date(),
        integer_max=integer_max,
    )


def copied_horizon(replica: Any, database: str, config: TableConfig, schema: TableSchema,
                   copy_state: StoredState) -> Horizon:
    """The load's bounds: the copy phase's committed watermarks (inclusive); without them, the replica's
    clock. The load never reads past what the copy committed."""
    base = capture_horizon(replica, watermark_candidates(config, schema), database, config.name)
    inclusive = {}
    if copy_state.status is not None:
        for column in watermark_candidates(config, schema):
            if column.name == copy_state.primary_column_name:
                text = copy_state.last_primary_value
            else:
                text = copy_state.column_values.get(column.name)
            value = watermark.parse(text, column.watermark_kind)
            if value is not None:
                inclusive[column.name] = value
    return Horizon(timestamp_upper=base.timestamp_upper, datetime_upper=base.datetime_upper,
                   date_upper=base.date_upper, integer_max=base.integer_max, inclusive=inclusive)


def _as_datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, bytes):
        value = value.decode()
    return dt.datetime.fromisoformat(str(value))


# ---------------------------------------------------------------- a crowded watermark second

def resume_point(replica: Any, database: str, plan: Plan, target: Any, dialect: ModuleType,
                 where: dict[str, Any]) -> tuple | None:
    """Past the rows of a crowded watermark second the phase's target already holds
    (plan.watermark_resume): the rows are counted in the replica (`database`), the last key is asked of
    the phase's own target (connection `target` of `dialect`, the table in `where`: it holds exactly what
    was read, even after a crash between two blocks)."""

    def count_at(value: Any) -> int:
        return int(fetch_one(replica, mysql.render("watermark_rows", database=Ident(database), table=plan.table,
                                                   column=plan.primary.column), {"value": value})[0])

    def last_key_at(value: Any) -> tuple | None:
        return fetch_one(target, dialect.render("watermark_last_key", table=plan.table, column=plan.primary.column,
                                                key=tuple(plan.order[1:]), **where), {"value": value})

    return watermark_resume(plan, count_at, last_key_at)


def resume_note(start_after: tuple) -> str:
    return (f"watermark second {watermark.format(start_after[0])} shared by more than {RESCAN_LIMIT} rows: "
            f"read past key {', '.join(map(str, start_after[1:]))}")
