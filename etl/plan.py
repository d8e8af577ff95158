"""One table + one phase -> a frozen plan: strategy, watermark windows, columns. No connections here.

Strategies:

* ``full``: read every row (keyset over the primary key); the target's contents are replaced.
* ``primary``: rows whose primary incremental column lies in [stored watermark, upper bound).
* ``fallback``: rows inside the window of ANY incremental column (OR), each column with its own watermark.

The upper bound of a window is captured before the read starts: for timestamps the start of the source's
current second (a second still open is left for the next run) and never past the start of the oldest open
InnoDB transaction; for integers the column's maximum; for the load phase the copy phase's committed
watermark (inclusive).

Everything here is pure: the facts a phase gathered (etl/phases/facts.py) go in, a frozen value comes out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable

from etl import watermark
from etl.config import TableConfig
from etl.errors import ConfigError, SchemaError
from etl.render import Ident
from etl.schema import INTEGER_TYPES, Column, TableSchema


@dataclass(frozen=True)
class Bound:
    """The window one watermark column is read in."""

    column: Ident
    kind: str                       # integer | datetime | date
    lower: Any = None               # inclusive; None: no lower bound
    upper: Any = None               # None: no upper bound
    upper_inclusive: bool = False

    @property
    def lower_set(self) -> bool:
        return self.lower is not None

    @property
    def upper_set(self) -> bool:
        return self.upper is not None

    def admits(self, value: Any) -> bool:
        """May `value`, read in this run, become the new watermark? (Usable and inside the upper bound.)"""
        if not watermark.usable(value):
            return False
        if self.upper is None:
            return True
        return value <= self.upper if self.upper_inclusive else value < self.upper


@dataclass(frozen=True)
class StoredState:
    """What the tracking tables say about one table in one phase."""

    status: str | None = None
    primary_column_name: str | None = None
    last_primary_value: str | None = None
    column_values: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Horizon:
    """Upper bounds captured when the run starts (see module docstring)."""

    timestamp_upper: dt.datetime | None = None   # for TIMESTAMP columns (UTC sessions)
    datetime_upper: dt.datetime | None = None    # for DATETIME columns (server's own time zone)
    date_upper: dt.date | None = None
    integer_max: dict[str, int | None] = field(default_factory=dict)
    inclusive: dict[str, Any] = field(default_factory=dict)  # column -> inclusive upper (load: copy watermark)


@dataclass(frozen=True)
class Plan:
    phase: str
    table: Ident
    config: TableConfig
    strategy: str                    # full | primary | fallback
    reason: str
    key: tuple[Ident, ...]
    columns: tuple[Column, ...]
    primary: Bound | None
    fallback: tuple[Bound, ...]
    batch_size: int
    warnings: tuple[str, ...] = ()

    @property
    def bounds(self) -> tuple[Bound, ...]:
        """Every watermark this plan will record."""
        return (self.primary,) if self.primary is not None else self.fallback

    @property
    def order(self) -> tuple[Ident, ...]:
        """Read order; also the keyset the batches page over."""
        if self.strategy == "primary" and self.primary is not None:
            return (self.primary.column,) + tuple(k for k in self.key if k != self.primary.column)
        return self.key

    @property
    def lead(self) -> tuple[Ident, ...]:
        """Columns selected first, typed: the keyset, then the watermark columns not already in it."""
        extra = tuple(b.column for b in self.bounds if b.column not in self.order)
        return self.order + extra

    @property
    def lead_kinds(self) -> tuple[str, ...]:
        """How each lead column's value is parsed: a watermark kind, 'integer' for integer keys, else text."""
        kinds = {b.column: b.kind for b in self.bounds}
        columns = {c.name: c for c in self.columns}
        return tuple(
            kinds.get(name) or ("integer" if columns[name].data_type in INTEGER_TYPES else "text")
            for name in self.lead
        )

    def window_params(self) -> dict[str, Any]:
        """Bind values of the plan's filter (see _macros/predicates.sql.j2 `plan_filter`)."""
        params: dict[str, Any] = {}
        if self.strategy == "full":
            return params
        for i, bound in enumerate(self.bounds):
            if bound.lower_set:
                params[f"w{i}_lo"] = bound.lower
            if bound.upper_set:
                params[f"w{i}_hi"] = bound.upper
        return params

    def admission_params(self) -> dict[str, Any]:
        """Bind values of `admissible` (_macros/predicates.sql.j2): per bound i, m{i}_floor (the watermark
        floor of dates and times) and m{i}_hi (its upper bound, when it has one)."""
        params: dict[str, Any] = {}
        for i, bound in enumerate(self.bounds):
            floor = watermark.floor(bound.kind)
            if floor is not None:
                params[f"m{i}_floor"] = floor
            if bound.upper_set:
                params[f"m{i}_hi"] = bound.upper
        return params

    def describe(self) -> str:
        parts = [f"{self.phase} {self.table}: strategy {self.strategy} ({self.reason})"]
        for bound in self.bounds:
            op = "<=" if bound.upper_inclusive else "<"
            parts.append(f"  {bound.column} >= {watermark.format(bound.lower) if bound.lower is not None else '-inf'}"
                         f" and {op} {watermark.format(bound.upper) if bound.upper is not None else '+inf'}")
        parts.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(parts)


def _upper_for(column: Column, horizon: Horizon) -> tuple[Any, bool]:
    if column.name in horizon.inclusive:
        return horizon.inclusive[column.name], True
    kind = column.watermark_kind
    if kind == "integer":
        return horizon.integer_max.get(column.name), True
    if kind == "date":
        return horizon.date_upper, False
    if column.data_type == "timestamp":
        return horizon.timestamp_upper, False
    return horizon.datetime_upper, False


def make_plan(
    phase: str,
    config: TableConfig,
    schema: TableSchema,
    state: StoredState,
    horizon: Horizon,
    *,
    force_full: bool = False,
    target_exists: bool = True,
    strategy_override: str | None = None,
    refresh: str | None = None,
) -> Plan:
    """Decide how one table is read in one phase. Pure: everything it needs is passed in. `refresh`: why
    the target needs a full refresh whatever its watermarks say (a column added upstream); the reason goes
    into the run's notes."""
    warnings: list[str] = []
    key = tuple(Ident(k) for k in config.primary_key)
    for name in key:
        schema.column(name)  # raises SchemaError naming the column and table

    def checked(name: str) -> Column | None:
        if not schema.has_column(name):
            warnings.append(f"incremental column {name!r} does not exist in {schema.name}; skipped")
            return None
        column = schema.column(name)
        if not column.orderable:
            warnings.append(f"incremental column {name!r} of {schema.name} has type {column.column_type}, "
                            "which cannot carry a watermark; skipped")
            return None
        return column

    primary_col = checked(config.primary_incremental_column) if config.primary_incremental_column else None
    fallback_cols = [] if primary_col else [c for c in map(checked, config.incremental_columns) if c is not None]

    def bound(column: Column, stored: str | None) -> Bound:
        upper, inclusive = _upper_for(column, horizon)
        return Bound(column=column.name, kind=column.watermark_kind, lower=watermark.parse(stored, column.watermark_kind),
                     upper=upper, upper_inclusive=inclusive)

    # A watermark stored for another column is never parsed, let alone reused (it may not even be of
    # this column's type).
    same_column = primary_col is not None and state.primary_column_name in (None, primary_col.name)
    primary = bound(primary_col, state.last_primary_value if same_column else None) if primary_col else None
    fallback = tuple(bound(c, state.column_values.get(c.name)) for c in fallback_cols)

    strategy, reason = "primary" if primary else "fallback", "stored watermark"
    if force_full:
        strategy, reason = "full", "--full requested"
    elif config.is_full_table:
        strategy, reason = "full", "extraction_strategy full_table"
    elif not target_exists:
        strategy, reason = "full", "target table does not exist yet"
    elif primary and state.primary_column_name not in (None, primary.column):
        strategy, reason = "full", (f"stored primary column {state.primary_column_name!r} differs from the "
                                    f"configured {primary.column!r}; not reusing its watermark")
    elif primary and primary.lower is None:
        strategy, reason = "full", "no watermark recorded yet"
    elif not primary and not fallback:
        strategy, reason = "full", "no usable incremental column"
    elif not primary and state.primary_column_name is not None:
        strategy, reason = "full", f"stored primary column {state.primary_column_name!r} is no longer configured"
    elif not primary and any(b.lower is None for b in fallback):
        missing = ", ".join(b.column for b in fallback if b.lower is None)
        strategy, reason = "full", f"no watermark recorded yet for {missing}"
    if refresh is not None and target_exists:
        if strategy != "full":
            strategy, reason = "full", refresh
        warnings.append(f"full refresh: {refresh}")

    if strategy_override and strategy_override != strategy:
        if strategy_override == "primary" and not primary:
            raise ConfigError(f"table {schema.name}: --strategy primary needs a primary incremental column")
        if strategy_override == "fallback" and not fallback:
            raise ConfigError(f"table {schema.name}: --strategy fallback needs primary_incremental_column none")
        strategy, reason = strategy_override, "--strategy requested"

    return Plan(
        phase=phase, table=schema.name, config=config, strategy=strategy, reason=reason, key=key,
        columns=schema.columns, primary=primary, fallback=fallback, batch_size=config.batch_size,
        warnings=tuple(warnings),
    )


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
    return (bound.lower,) + tuple(watermark.typed(v, k) if isinstance(v, (str, bytes)) else v
                                  for v, k in zip(key, kinds))
