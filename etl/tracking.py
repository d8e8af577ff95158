"""Stored state for planning, and the new state written inside the transaction of its data.

The copy phase tracks in the replica (etl_copy_status, etl_copy_column_status, etl_run_history); the load
phase in PostgreSQL (raw.etl_load_status, raw.etl_load_column_status, raw.etl_run_history).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from etl import watermark
from etl.db import execute, fetch_all, fetch_one
from etl.plan import Plan, StoredState
from etl.render import Ident, render

PHASE_DIALECT = {"copy": "mysql", "load": "postgres"}
_STATUS_COLUMN = {"copy": "copy_status", "load": "load_status"}
_ROWS_COLUMN = {"copy": "rows_copied", "load": "rows_loaded"}


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

    def watermark_after(self, column: str) -> Any:
        """The new watermark of a column: the largest admissible value read, or the old one."""
        bound = next(b for b in self.plan.bounds if b.column == column)
        return watermark.later(bound.lower, self.new_values.get(column))

    def observe(self, column: str, value: Any) -> None:
        bound = next(b for b in self.plan.bounds if b.column == column)
        if bound.admits(value):
            self.new_values[column] = watermark.later(self.new_values.get(column), value)


def _ctx(phase: str, schema: str | None) -> dict[str, Any]:
    return {"schema": Ident(schema)} if phase == "load" else {}


def read_state(conn: Any, phase: str, table: str, schema: str | None = None) -> StoredState:
    dialect, ctx = PHASE_DIALECT[phase], _ctx(phase, schema)
    row = fetch_one(conn, render(f"{dialect}/{phase}_status_select", **ctx), {"table_name": table})
    columns = fetch_all(conn, render(f"{dialect}/{phase}_column_status_select", **ctx), {"table_name": table})
    if row is None:
        return StoredState(column_values=dict(columns))
    return StoredState(status=row[0], primary_column_name=row[1], last_primary_value=row[2],
                       column_values=dict(columns))


def _describe_watermarks(plan: Plan, values: dict[str, Any]) -> str | None:
    if plan.primary is not None:
        return watermark.format(values.get(plan.primary.column))
    if not plan.fallback:
        return None
    return ", ".join(f"{b.column}={watermark.format(values.get(b.column))}" for b in plan.fallback)


def write_success(conn: Any, outcome: Outcome, *, status: str = "success", schema: str | None = None,
                  final: bool = True) -> None:
    """Tracking (and, when final, run history) for data written in the current transaction of `conn`."""
    plan, phase = outcome.plan, outcome.plan.phase
    dialect, ctx = PHASE_DIALECT[phase], _ctx(phase, schema)
    after = {b.column: outcome.watermark_after(b.column) for b in plan.bounds}
    with conn.cursor() as cur:
        primary = plan.primary
        execute(cur, render(f"{dialect}/{phase}_status_upsert", **ctx), {
            "table_name": plan.table,
            "last_primary_value": watermark.format(after[primary.column]) if primary else None,
            "primary_column_name": primary.column if primary else None,
            _ROWS_COLUMN[phase]: outcome.rows_written,
            _STATUS_COLUMN[phase]: status,
        })
        if plan.strategy == "full" or not plan.fallback:
            execute(cur, render(f"{dialect}/{phase}_column_status_clear", **ctx), {"table_name": plan.table})
        for bound in plan.fallback:
            execute(cur, render(f"{dialect}/{phase}_column_status_upsert", **ctx), {
                "table_name": plan.table, "column_name": bound.column,
                "last_value": watermark.format(after[bound.column]),
            })
        if final:
            write_history(cur, outcome, status=status, schema=schema,
                          watermark_after=_describe_watermarks(plan, after))


def write_history(cur: Any, outcome: Outcome, *, status: str, schema: str | None = None,
                  watermark_after: str | None = None, error: str | None = None) -> None:
    plan, phase = outcome.plan, outcome.plan.phase
    dialect, ctx = PHASE_DIALECT[phase], _ctx(phase, schema)
    params = {
        "run_id": outcome.run_id, "phase": phase, "table_name": plan.table, "strategy": plan.strategy,
        "status": status, "primary_column_name": plan.primary.column if plan.primary else None,
        "watermark_before": _describe_watermarks(plan, {b.column: b.lower for b in plan.bounds}),
        "watermark_after": watermark_after, "rows_read": outcome.rows_read, "rows_written": outcome.rows_written,
        "values_adjusted": outcome.values_adjusted, "notes": "; ".join(outcome.notes) or None, "error": error,
        "started_at": outcome.started_at,
    }
    if dialect == "postgres":
        params["id"] = outcome.history_id
    execute(cur, render(f"{dialect}/run_history_insert", **ctx), params)


def write_failure(conn: Any, outcome: Outcome, error: str, *, schema: str | None = None) -> None:
    """In its own transaction: status failed, watermark kept, the error in the run history."""
    plan, phase = outcome.plan, outcome.plan.phase
    dialect, ctx = PHASE_DIALECT[phase], _ctx(phase, schema)
    conn.rollback()
    with conn.cursor() as cur:
        execute(cur, render(f"{dialect}/{phase}_status_mark", **ctx), {
            "table_name": plan.table, "primary_column_name": plan.primary.column if plan.primary else None,
            _STATUS_COLUMN[phase]: "failed",
        })
        write_history(cur, outcome, status="failed", schema=schema, error=error[:4000])
    conn.commit()
