"""Two runs of the same phase on the same table never interleave.

Copy takes a named lock (GET_LOCK) in the replica, load an advisory lock in PostgreSQL, each on a
connection of its own held for the table's whole run; different tables run freely. A run that cannot
get the lock within the timeout raises :class:`LockBusy` and that table is skipped.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import psycopg2.errors

from etl.db import fetch_one, mysql_connect, pg_connect
from etl.errors import EtlError
from etl.render import render
from etl.settings import Settings


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
    timeout = settings.lock_timeout
    name = lock_name(phase, table, settings.replica_url.database if phase == "copy" else settings.raw_schema)
    busy = LockBusy(f"{phase} {table}: skipped, another run holds its lock (waited {timeout:g} s; "
                    "ETL_LOCK_TIMEOUT sets the wait)")
    if phase == "copy":
        conn = mysql_connect(settings.replica_url, role="replica")
        try:
            acquired = fetch_one(conn, render("mysql/lock_acquire"), {"lock_name": name, "timeout_seconds": timeout})[0]
            if acquired != 1:
                raise busy
            yield
        finally:
            conn.close()  # closing the session releases the lock
        return
    if phase in ("load", "transform"):  # transform: one lock for the dbt run (etl/phases/transform.py)
        conn = pg_connect(settings.analytics_url)
        conn.autocommit = True
        try:
            fetch_one(conn, render("postgres/lock_timeout"), {"lock_timeout": f"{max(int(timeout * 1000), 1)}ms"})
            try:
                fetch_one(conn, render("postgres/lock_acquire"), {"lock_name": name})
            except psycopg2.errors.LockNotAvailable:
                raise busy from None
            yield
        finally:
            conn.close()
        return
    yield
