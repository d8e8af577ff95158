"""Running rendered statements on a DB-API connection (PyMySQL or psycopg2), whatever the database.

Connections themselves are made by the dialect modules (etl/dialects/), with their session setup.
"""

from __future__ import annotations

from typing import Any, Mapping

from etl.render import Statement


def execute(cursor: Any, statement: Statement, params: Mapping[str, Any] | None = None) -> Any:
    """Run `statement` with exactly its binds (Statement.to_dbapi checks both ways)."""
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
