"""Runs phases over tables: each table under its own lock, transient faults retried, failures isolated.

Tables are independent: `jobs` of them run at once (each its copy, then its load). One table's failure
is recorded against it and the others go on; a table whose copy failed is not loaded. This is the only
module that takes the per-table locks (etl/locks.py): copy and load each under their own, reconcile
under the copy lock for the replica and the load lock for raw, transform under one lock for the dbt run.
"""

from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from etl import stop, tracking
from etl.config import EtlConfig, TableConfig
from etl.dialects import BY_DRIVER
from etl.errors import ConfigError, ConnectionFailed, EtlError, mask_secrets
from etl.locks import LockBusy, table_lock
from etl.settings import Settings
from etl.stop import Interrupted

log = logging.getLogger("etl.runner")

DEFAULT_JOBS = 2
RETRY_BACKOFF_SECONDS = 1.0


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
    attempts: int = 1
    rejected: list[str] = field(default_factory=list)  # copy: rows that did not move (etl_copy_rejects); exit 1


@dataclass
class _Summary:
    """What run_table reads of a phase run: its strategy and row counts (a tracking.Outcome has them)."""

    strategy: str
    rows_read: int
    rows_written: int
    rejected: list[str] = field(default_factory=list)


def _copy(settings: Settings, table: TableConfig, run_id: str, **options: Any) -> _Summary:
    from etl.phases.copy import copy_table

    with table_lock(settings, "copy", table.name):
        outcome = copy_table(settings, table, run_id, **options)
    return _Summary(outcome.plan.strategy, outcome.rows_read, outcome.rows_written, outcome.rejected)


def _load(settings: Settings, table: TableConfig, run_id: str, **options: Any) -> _Summary:
    from etl.phases.load import load_table

    with table_lock(settings, "load", table.name):
        outcome = load_table(settings, table, run_id, **options)
    return _Summary(outcome.plan.strategy, outcome.rows_read, outcome.rows_written)


def _reconcile(settings: Settings, table: TableConfig, run_id: str, **_: Any) -> _Summary:
    deleted = reconcile_table(settings, table, run_id)
    return _Summary("keys", 0, deleted["replica"] + deleted["raw"])


PHASES: dict[str, Callable[..., _Summary]] = {"copy": _copy, "load": _load, "reconcile": _reconcile}


def reconcile_table(settings: Settings, table: TableConfig, run_id: str) -> dict[str, int]:
    """Delete from the replica (under the copy lock), then from raw (under the load lock), the rows whose
    keys no longer exist upstream."""
    from etl.verify import Reconciliation

    with Reconciliation(settings, table, run_id) as work:
        if not work.possible:
            return work.deleted
        with table_lock(settings, "copy", table.name):
            work.replica()
        if work.raw_exists():
            with table_lock(settings, "load", table.name):
                work.raw()
        return work.deleted


def reconcile(settings: Settings, config: EtlConfig, tables: list[str] | None = None) -> dict[str, dict[str, int]]:
    """`etl reconcile`: every selected table in turn; a failure stops it. Configured columns are checked
    against the source first (exit 2, nothing deleted)."""
    from etl.check import check_columns

    selected = config.select(tables)
    check_columns(settings, config, selected)
    run_id = str(uuid.uuid4())
    return {t.name: reconcile_table(settings, t, run_id) for t in selected}


def is_transient(exc: BaseException) -> bool:
    """Worth another attempt: a database that could not be reached, or an error its dialect calls transient
    (a lost connection, a deadlock, a lock wait timeout)."""
    if isinstance(exc, ConnectionFailed):
        return True
    return any(dialect.is_transient(exc) for dialect in BY_DRIVER.values())


def preflight(settings: Settings, phases: list[str]) -> None:
    """Fail fast, with one line naming the database, when one is down or its tracking schema is old."""
    from etl.dialects import mysql
    from etl.versions import require

    if "copy" in phases:
        mysql.connect(settings.source_url, role="source").close()
    # The copy needs only MySQL: it runs while PostgreSQL is down.
    require(settings, ("replica",) if set(phases) <= {"copy"} else ("replica", "analytics"))


def run_phases(settings: Settings, config: EtlConfig, phases: list[str], tables: list[str] | None = None, *,
               full: bool = False, strategy: str | None = None, jobs: int = DEFAULT_JOBS,
               reconcile_after_load: bool = True) -> list[TableResult]:
    """Each selected table through `phases` in order, `jobs` tables at a time. reconcile_after_load=False
    leaves the delete detection of `reconcile` tables to a separate `etl reconcile` (a scheduler's task)."""
    from etl.check import column_problems_by_table

    selected: list[TableConfig] = config.select(tables)
    preflight(settings, phases)
    run_id = str(uuid.uuid4())
    # The configured columns against the live tables before any data moves (exit 2): the source when this
    # run reads it, the replica for a load alone (its source may be out of reach). A table that ran before
    # is recorded failed (its status must not stay a stale success); a new or misspelt entry writes nothing.
    if "copy" in phases or "load" in phases:
        first = "copy" if "copy" in phases else "load"
        problems = column_problems_by_table(settings, config, selected,
                                            against="source" if first == "copy" else "replica")
        if problems:
            tracking.record_refused(settings, first, {t: "; ".join(problems[t.name]) for t in selected
                                                      if t.name in problems}, run_id)
            raise ConfigError("\n".join(line for lines in problems.values() for line in lines))
    if "copy" in phases:  # block files of runs killed outright (they hold table rows)
        from etl.dialects.mysql import sweep_block_folders
        for path in sweep_block_folders():
            log.info("removed the stale block folder %s of a run that no longer exists", path)

    def one_table(table: TableConfig) -> list[TableResult]:
        results = []
        for phase in phases:
            if phase == "transform":  # not per table: once for all tables, below
                continue
            if results and not results[-1].ok:
                results.append(TableResult(phase, table.name, False, error=f"skipped: {results[-1].phase} failed"))
                continue
            if stop.requested():  # nothing starts after a stop request
                results.append(TableResult(phase, table.name, False, error=f"not started: {stop.signal_name()}"))
                continue
            results.append(run_table(settings, phase, table, run_id, full=full, strategy=strategy))
        if (reconcile_after_load and "load" in phases and table.delete_detection == "reconcile"
                and all(r.ok for r in results) and not stop.requested()):
            results.append(run_table(settings, "reconcile", table, run_id))
        return results

    # The deletion log goes first, so the tables it feeds see this run's deletions.
    feed = [t for t in selected if t.name == "deletedobject"]
    per_table = [one_table(t) for t in feed]
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="etl") as pool:
        per_table += list(pool.map(one_table, [t for t in selected if t.name != "deletedobject"]))
    ordered = [r for phase in [*phases, "reconcile"] for results in per_table for r in results if r.phase == phase]
    if "transform" in phases and stop.requested():
        ordered += [TableResult("transform", t.name, False, error=f"not started: {stop.signal_name()}")
                    for t in selected]
    elif "transform" in phases:  # dbt builds the models of all tables that did not fail above, in one run
        ordered += transform_step(settings, config, selected, ordered, full=full, run_id=run_id)
    return ordered


def run_table(settings: Settings, phase: str, table: TableConfig, run_id: str, *, full: bool = False,
              strategy: str | None = None) -> TableResult:
    """One phase of one table, under its lock; transient faults are retried with backoff."""
    function = PHASES[phase]
    options = {"full": full, "strategy": strategy} if phase != "reconcile" else {}
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            summary = function(settings, table, run_id, **options)
        except Interrupted as exc:  # never retried; the phase rolled back and recorded it
            log.warning("%s %s: %s; rolled back", phase, table.name, exc)
            return TableResult(phase, table.name, False, seconds=time.monotonic() - started, error=str(exc),
                               attempts=attempt)
        except LockBusy as exc:
            log.error("%s", exc)
            return TableResult(phase, table.name, False, seconds=time.monotonic() - started, error=str(exc),
                               attempts=attempt)
        except Exception as exc:  # recorded against this table; the other tables go on
            message = mask_secrets(str(exc) if isinstance(exc, EtlError) else f"{type(exc).__name__}: {exc}")
            if is_transient(exc) and attempt <= settings.retries and not stop.requested():
                delay = RETRY_BACKOFF_SECONDS * 2 ** (attempt - 1)
                log.warning("%s %s: transient fault (%s); attempt %d of %d in %.1f s", phase, table.name, message,
                            attempt + 1, settings.retries + 1, delay)
                if stop.requested_during(delay):
                    return TableResult(phase, table.name, False, seconds=time.monotonic() - started,
                                       error=f"{message}; not retried: {stop.signal_name()}", attempts=attempt)
                continue
            log.error("%s %s failed: %s", phase, table.name, message)
            log.debug("traceback", exc_info=True)
            return TableResult(phase, table.name, False, seconds=time.monotonic() - started, error=message,
                               attempts=attempt)
        result = TableResult(phase, table.name, True, summary.strategy, summary.rows_read,
                             summary.rows_written, time.monotonic() - started, attempts=attempt,
                             rejected=summary.rejected)
        for line in summary.rejected:
            log.error("%s", line)
        reread = max(result.rows_read - result.rows_written, 0)
        # A run that changed nothing is one line of the summary, not one per table (--verbose shows it).
        log.log(logging.INFO if result.rows_written or phase == "reconcile" else logging.DEBUG,
                "%s %-16s %-8s read %d, written %d%s in %.2fs", phase, table.name, result.strategy,
                result.rows_read, result.rows_written, f" ({reread} re-read, unchanged)" if reread else "",
                result.seconds)
        return result


def transform_step(settings: Settings, config: EtlConfig, selected: list[TableConfig], earlier: list[TableResult], *,
                   full: bool = False, run_id: str | None = None) -> list[TableResult]:
    """The transform step of `etl run` / `etl transform`: once, after the other phases, for the selected
    tables that did not fail in them, under one lock (two dbt runs on the same project never interleave).
    Never raises: a failure is recorded against every table it concerns."""
    from etl.phases import transform

    failed = {r.table: r.phase for r in earlier if not r.ok}
    results = [TableResult("transform", t.name, False, error=f"skipped: {failed[t.name]} failed")
               for t in selected if t.name in failed]
    names = [t.name for t in selected if t.name not in failed]
    if not names:
        return results
    started = time.monotonic()
    try:
        with table_lock(settings, "transform", transform.LOCK_NAME), stop.main_thread_interruptible():
            windows = transform.transform_tables(settings, config, None if len(names) == len(config.tables) else names,
                                                 full=full, run_id=run_id)
    except Exception as exc:  # dbt missing, a database down, the lock busy: every table of the step failed
        message = mask_secrets(str(exc) if isinstance(exc, EtlError) else f"{type(exc).__name__}: {exc}")
        log.error("transform failed: %s", message)
        log.debug("traceback", exc_info=True)
        return results + [TableResult("transform", name, False, seconds=time.monotonic() - started, error=message)
                          for name in names]
    for w in windows:
        ok = w.status != "failed"
        results.append(TableResult("transform", w.table, ok, w.strategy, w.rows, w.rows, w.seconds,
                                   None if ok else w.error))
    return results
