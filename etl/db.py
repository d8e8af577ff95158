"""DB-API connections for the data path (PyMySQL, psycopg2); SQLAlchemy engines only for Alembic.

Every MySQL session runs with ``time_zone = '+00:00'`` so that TIMESTAMP values and watermarks are
exact instants (no repeated hour at a DST change) and identical on the source and the replica.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

import psycopg2
import psycopg2.extensions
import pymysql
import pymysql.cursors
from sqlalchemy.engine import URL

from etl.errors import ConnectionFailed
from etl.render import Statement, render
from etl.settings import mask_secrets, mask_url

#: Hosts that are this machine: connections to them never leave it.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def mysql_connect(url: URL, *, database: bool = True, role: str = "mysql", local_infile: bool = False,
                  **kwargs: Any) -> pymysql.Connection:
    """A PyMySQL connection. local_infile: allow LOAD DATA LOCAL INFILE (the separate-servers copy into a
    replica the ETL trusts: the driver sends the server whichever local file it asks for).

    On the loopback interface the driver's opportunistic TLS is turned off: it protects nothing there, and
    setting it up (loading the system's CA certificates) costs ~25 ms per connection, most of a small
    table's run. Elsewhere the driver's default stands (TLS when the server offers it)."""
    host = url.host or "127.0.0.1"
    if host in LOOPBACK_HOSTS:
        kwargs.setdefault("ssl_disabled", True)
    try:
        return pymysql.connect(
            host=host,
            port=url.port or 3306,
            user=url.username or "root",
            password=url.password or "",
            database=url.database if database else None,
            charset="utf8mb4",
            autocommit=False,
            init_command=render("mysql/session_init").plain().strip(),
            local_infile=local_infile,
            **kwargs,
        )
    except pymysql.MySQLError as exc:
        raise ConnectionFailed(f"cannot connect to the {role} database {mask_url(url)}: {_first_line(exc)}") from None


def pg_connect(url: URL, *, database: str | None = None, role: str = "analytics") -> psycopg2.extensions.connection:
    try:
        conn = psycopg2.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 5432,
            user=url.username or "postgres",
            password=url.password or None,
            dbname=database or url.database,
            application_name="opendental-etl",
        )
    except psycopg2.Error as exc:
        raise ConnectionFailed(f"cannot connect to the {role} database {mask_url(url)}: {_first_line(exc)}") from None
    conn.autocommit = False
    return conn


def _first_line(exc: BaseException) -> str:
    text = str(exc.args[1] if isinstance(exc, pymysql.MySQLError) and len(exc.args) > 1 else exc)
    return mask_secrets(text.strip().splitlines()[0] if text.strip() else type(exc).__name__)


def execute(cursor: Any, statement: Statement, params: Mapping[str, Any] | None = None) -> Any:
    sql, values = statement.to_dbapi(params)
    cursor.execute(sql, values)
    return cursor


def fetch_all(conn: Any, statement: Statement, params: Mapping[str, Any] | None = None) -> list[tuple]:
    with conn.cursor() as cur:
        execute(cur, statement, params)
        return list(cur.fetchall())


def fetch_one(conn: Any, statement: Statement, params: Mapping[str, Any] | None = None) -> tuple | None:
    with conn.cursor() as cur:
        execute(cur, statement, params)
        return cur.fetchone()


@contextlib.contextmanager
def mysql_stream(conn: pymysql.Connection, statement: Statement, params: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """An unbuffered cursor: rows come off the wire as they are read, memory stays flat."""
    cur = conn.cursor(pymysql.cursors.SSCursor)
    try:
        execute(cur, statement, params)
        yield cur
    finally:
        cur.close()
