"""Runs phases over tables: one table's failure is recorded and the others go on."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from etl.config import EtlConfig, TableConfig
from etl.errors import EtlError
from etl.settings import Settings, mask_secrets

log = logging.getLogger("etl.runner")


@dataclass
class TableResult:
    phase: str
    table: str
    ok: bool
    strategy: str | None = None
    rows_read: int = 0
    rows_written: int = 0
    seconds: float = 0.0
    error: str | None = None


def _phase_function(phase: str):
    if phase == "copy":
        from etl.phases.copy import copy_table
        return copy_table
    if phase == "load":
        from etl.phases.load import load_table
        return load_table
    raise ValueError(phase)


def run_phases(settings: Settings, config: EtlConfig, phases: list[str], tables: list[str] | None = None, *,
               full: bool = False, strategy: str | None = None) -> list[TableResult]:
    """Each phase over the selected tables, in order. A table that failed in copy is not loaded."""
    from etl.migrate import check_up_to_date

    check_up_to_date(settings)
    run_id = str(uuid.uuid4())
    selected: list[TableConfig] = config.select(tables)
    results: list[TableResult] = []
    failed: set[str] = set()
    for phase in phases:
        function = _phase_function(phase)
        for table in selected:
            if table.name in failed:
                results.append(TableResult(phase, table.name, False, error="skipped: an earlier phase failed"))
                continue
            started = time.monotonic()
            try:
                outcome = function(settings, table, run_id, full=full, strategy=strategy)
            except EtlError as exc:
                message = mask_secrets(str(exc))
                results.append(TableResult(phase, table.name, False, seconds=time.monotonic() - started, error=message))
                failed.add(table.name)
                log.error("%s %s failed: %s", phase, table.name, message)
                continue
            except Exception as exc:  # a database error: record it against the table, go on with the others
                message = mask_secrets(f"{type(exc).__name__}: {exc}")
                results.append(TableResult(phase, table.name, False, seconds=time.monotonic() - started, error=message))
                failed.add(table.name)
                log.error("%s %s failed: %s", phase, table.name, message)
                log.debug("traceback", exc_info=True)
                continue
            result = TableResult(phase, table.name, True, outcome.plan.strategy, outcome.rows_read,
                                 outcome.rows_written, time.monotonic() - started)
            results.append(result)
            log.info("%s %-16s %-8s read %d, wrote %d in %.2fs", phase, table.name, result.strategy,
                     result.rows_read, result.rows_written, result.seconds)
    return results
