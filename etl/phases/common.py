"""What the copy and load phases share: candidate watermark columns, schema drift between two tables."""

from __future__ import annotations

import logging
from typing import Any, Callable

from etl import watermark
from etl.config import TableConfig
from etl.db import fetch_one
from etl.execute import RESCAN_LIMIT, watermark_resume
from etl.render import Ident, render
from etl.schema import Column, TableSchema

log = logging.getLogger("etl.phases")


def watermark_candidates(config: TableConfig, schema: TableSchema) -> list[Column]:
    """Configured incremental columns that exist and are orderable (make_plan reports the others)."""
    names = [config.primary_incremental_column] if config.primary_incremental_column else []
    names += list(config.incremental_columns)
    return [schema.column(n) for n in dict.fromkeys(names) if schema.has_column(n) and schema.column(n).orderable]


def drift(upstream: TableSchema, target_columns: dict[str, str], same_type) -> tuple[list[Column], list[str]]:
    """Columns to add to the target, and notes about columns dropped or retyped upstream (never applied)."""
    added = [c for c in upstream.columns if c.name not in target_columns]
    notes = []
    upstream_names = set(upstream.column_names)
    for name, target_type in target_columns.items():
        if name.startswith("_etl_"):
            continue
        if name not in upstream_names:
            notes.append(f"column {name!r} no longer exists upstream; kept in the target (nothing is dropped)")
        elif not same_type(upstream.column(name), target_type):
            notes.append(f"column {name!r} is now {upstream.column(name).column_type} upstream but "
                         f"{target_type} in the target; not changed, review it")
    return added, notes


def resume_point(replica, database: str, plan, outcome, last_key_at: Callable[[Any], tuple | None]) -> tuple | None:
    """Past the rows of a crowded watermark second the phase's target already holds
    (execute.watermark_resume); the rows are counted in the replica, `last_key_at` asks the target."""

    def count_at(value):
        return int(fetch_one(replica, render("mysql/watermark_rows", database=Ident(database), table=plan.table,
                                             column=plan.primary.column), {"value": value})[0])

    start = watermark_resume(plan, count_at, last_key_at)
    if start is not None:
        outcome.notes.append(f"watermark second {watermark.format(start[0])} shared by more than "
                             f"{RESCAN_LIMIT} rows: read past key {', '.join(map(str, start[1:]))}")
        log.info("%s: %s", plan.table, outcome.notes[-1])
    return start
