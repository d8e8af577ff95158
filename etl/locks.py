"""Two runs of the same phase on the same table never interleave; only the runner (etl/runner.py) takes
these locks.

Copy takes a named lock in the replica, load an advisory lock in the analytics database (transform one
lock for the dbt run), each on a connection of its own held for the table's whole run; different tables
run freely. The databases' own lock statements are their dialects' (``acquire_lock``). A run that cannot
get the lock within the timeout raises :class:`LockBusy` and that table is skipped.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from etl.dialects import for_url, mysql
from etl.errors import EtlError
from etl.settings import Settings

#: phase -> the database whose lock it takes
LOCKED_IN = {"copy": "replica", "load": "analytics", "transform": "analytics"}


class LockBusy(EtlError):
    """Another run holds the lock of this phase and table."""


def lock_name(phase: str, table: str, scope: str | None = None) -> str:
    """MySQL named locks are server-wide: the replica database is part of the name, so two replicas on
    one server do not block each other. PostgreSQL advisory locks are per database, and one analytics
    database holds many clinics' raw schemas: the raw schema is part of the name (two clinics never share
    a lock)."""
    return f"etl:{scope}:{phase}:{table}" if scope else f"etl:{phase}:{table}"


@contextlib.contextmanager
def table_lock(settings: Settings, phase: str, table: str) -> Iterator[None]:
    """Hold the lock of `phase` on `table` for the block. An unknown phase is a programming error."""
    if phase not in LOCKED_IN:
        raise ValueError(f"no lock for phase {phase!r} (locked phases: {', '.join(LOCKED_IN)})")
    timeout = settings.lock_timeout
    if LOCKED_IN[phase] == "replica":
        dialect, url, name = mysql, settings.replica_url, lock_name(phase, table, settings.replica_url.database)
        conn = mysql.connect(url, role="replica")
    else:
        dialect, url = for_url(settings.analytics_url), settings.analytics_url
        name = lock_name(phase, table, settings.raw_schema)  # many clinics' raw schemas share one database
        conn = dialect.connect(url)
    try:
        if not dialect.acquire_lock(conn, name, timeout):
            raise LockBusy(f"{phase} {table}: skipped, another run holds its lock (waited {timeout:g} s; "
                           "ETL_LOCK_TIMEOUT sets the wait)")
        yield
    finally:
        conn.close()  # closing the session releases the lock
