"""Runs phases over tables: each table under its own lock, transient faults retried, failures isolated.

Tables are independent: `jobs` of them run at once (each its copy, then its load). One table's failure
is recorded against it and the others go on; a table whose copy failed is not loaded.
"""

from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg2
import psycopg2.errors
import pymysql

from etl.config import EtlConfig, TableConfig
from etl.errors import ConnectionFailed, EtlError
from etl.locks import LockBusy, table_lock
from etl.settings import Settings, mask_secrets

log = logging.getLogger("etl.runner")

#: MySQL errors worth another attempt: server gone / lost connection, lock wait timeout, deadlock.
_MYSQL_TRANSIENT = {2003, 2006, 2013, 1205, 1213}
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


def _phase_function(phase: str):
    if phase == "copy":
        from etl.phases.copy import copy_table
        return copy_table
    if phase == "load":
        from etl.phases.load import load_table
        return load_table
    if phase == "reconcile":
        return _reconcile
    raise ValueError(phase)


@dataclass
class _Summary:
    strategy: str
    rows_read: int
    rows_written: int

    @property
    def plan(self):  # the shape run_table reads from a phase outcome
        return self


def _reconcile(settings: Settings, table: TableConfig, run_id: str, **_: object) -> _Summary:
    from etl.verify import reconcile_table

    deleted = reconcile_table(settings, table, run_id)
    return _Summary("keys", 0, deleted["replica"] + deleted["raw"])


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionFailed):
        return True
    if isinstance(exc, pymysql.err.MySQLError):
        return bool(exc.args) and exc.args[0] in _MYSQL_TRANSIENT
    if isinstance(exc, (psycopg2.errors.DeadlockDetected, psycopg2.errors.SerializationFailure)):
        return True
    return isinstance(exc, psycopg2.OperationalError) and not isinstance(exc, psycopg2.errors.LockNotAvailable)


def preflight(settings: Settings, phases: list[str]) -> None:
    """Fail fast, with one line naming the database, when one is down or its tracking schema is old."""
    from etl.db import mysql_connect
    from etl.versions import up_to_date

    if "copy" in phases:
        mysql_connect(settings.source_url, role="source").close()
    if not up_to_date(settings):  # a fast yes (no Alembic import); otherwise Alembic's check explains
        from etl.migrate import check_up_to_date
        check_up_to_date(settings)


def run_phases(settings: Settings, config: EtlConfig, phases: list[str], tables: list[str] | None = None, *,
               full: bool = False, strategy: str | None = None, jobs: int = DEFAULT_JOBS,
               reconcile: bool = True) -> list[TableResult]:
    """Each selected table through `phases` in order, `jobs` tables at a time. reconcile=False leaves the
    delete detection of `reconcile` tables to a separate `etl reconcile` (a scheduler's task of its own)."""
    selected: list[TableConfig] = config.select(tables)
    preflight(settings, phases)
    run_id = str(uuid.uuid4())

    def one_table(table: TableConfig) -> list[TableResult]:
        results = []
        for phase in phases:
            if phase == "transform":  # not per table: once for all tables, below
                continue
            if results and not results[-1].ok:
                results.append(TableResult(phase, table.name, False, error=f"skipped: {results[-1].phase} failed"))
                continue
            results.append(run_table(settings, phase, table, run_id, full=full, strategy=strategy))
        if reconcile and "load" in phases and table.delete_detection == "reconcile" and all(r.ok for r in results):
            results.append(run_table(settings, "reconcile", table, run_id))
        return results

    # The deletion log goes first, so the tables it feeds see this run's deletions.
    feed = [t for t in selected if t.name == "deletedobject"]
    per_table = [one_table(t) for t in feed]
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="etl") as pool:
        per_table += list(pool.map(one_table, [t for t in selected if t.name != "deletedobject"]))
    ordered = [r for phase in [*phases, "reconcile"] for results in per_table for r in results if r.phase == phase]
    if "transform" in phases:  # dbt builds the models of all tables that did not fail above, in one run
        from etl.phases.transform import transform_after
        ordered += transform_after(settings, config, selected, ordered, full=full, run_id=run_id)
    return ordered


def run_table(settings: Settings, phase: str, table: TableConfig, run_id: str, *, full: bool = False,
              strategy: str | None = None) -> TableResult:
    """One phase of one table, under its lock; transient faults are retried with backoff."""
    function = _phase_function(phase)
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            with table_lock(settings, phase, table.name):
                outcome = function(settings, table, run_id, full=full, strategy=strategy)
        except LockBusy as exc:
            log.error("%s", exc)
            return TableResult(phase, table.name, False, seconds=time.monotonic() - started, error=str(exc),
                               attempts=attempt)
        except Exception as exc:  # recorded against this table; the other tables go on
            message = mask_secrets(str(exc) if isinstance(exc, EtlError) else f"{type(exc).__name__}: {exc}")
            if is_transient(exc) and attempt <= settings.retries:
                delay = RETRY_BACKOFF_SECONDS * 2 ** (attempt - 1)
                log.warning("%s %s: transient fault (%s); attempt %d of %d in %.1f s", phase, table.name, message,
                            attempt + 1, settings.retries + 1, delay)
                time.sleep(delay)
                continue
            log.error("%s %s failed: %s", phase, table.name, message)
            log.debug("traceback", exc_info=True)
            return TableResult(phase, table.name, False, seconds=time.monotonic() - started, error=message,
                               attempts=attempt)
        result = TableResult(phase, table.name, True, outcome.plan.strategy, outcome.rows_read,
                             outcome.rows_written, time.monotonic() - started, attempts=attempt)
        log.info("%s %-16s %-8s read %d, wrote %d in %.2fs", phase, table.name, result.strategy,
                 result.rows_read, result.rows_written, result.seconds)
        return result
