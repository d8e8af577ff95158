"""MySQL / MariaDB: the source and the replica.

What is MySQL's own: connections and their session setup (every session in UTC, so TIMESTAMP values and
watermarks are exact instants, identical on the source and the replica), which of its errors are transient,
named locks (GET_LOCK), reflection of a live table, how a source column is repeated in the replica (DDL) and
the text LOAD DATA INFILE reads (``_macros/infile_text.sql.j2``, written block by block to a private file),
and its templates, ``sql_templates/mysql/``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Iterator

import pymysql
import pymysql.converters
from sqlalchemy.engine import URL

from etl.db import fetch_all, fetch_one
from etl.errors import ConnectionFailed, SchemaError, first_line
from etl.render import Ident, Statement
from etl.render import render as _render_template
from etl.schema import DATETIME_TYPES, INTEGER_TYPES, Column, TableSchema
from etl.settings import mask_url

NAME = "mysql"

#: Hosts that are this machine: connections to them never leave it.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

#: Encoders only, no decoders: data rows are read as the server's own text (or bytes for binary), so a
#: value is never reinterpreted by Python on its way through (doubles, TIME beyond 24h, zero dates).
RAW_TEXT_CONV = {k: v for k, v in pymysql.converters.conversions.items() if not isinstance(k, int)}

#: Errors worth another attempt: server gone / lost connection, lock wait timeout, deadlock.
TRANSIENT_ERRORS = frozenset({2003, 2006, 2013, 1205, 1213})

#: The copy phase tracks in the replica itself (its default database): no scope to name. Run-history ids
#: come from AUTO_INCREMENT.
ASSIGNS_HISTORY_IDS = False


def render(statement: str, /, **context: Any) -> Statement:
    """``sql_templates/mysql/<statement>.sql.j2``."""
    return _render_template(f"{NAME}/{statement}", **context)


def connect(url: URL, *, role: str = "mysql", database: bool = True, local_infile: bool = False,
            raw_text: bool = False, **kwargs: Any) -> pymysql.Connection:
    """A PyMySQL connection in the ETL's session setup (mysql/session_init). raw_text: values arrive as the
    server's text (RAW_TEXT_CONV), for data paths. local_infile: allow LOAD DATA LOCAL INFILE (the
    separate-servers copy into a replica the ETL trusts: the driver sends the server whichever local file it
    asks for).

    On the loopback interface the driver's opportunistic TLS is turned off: it protects nothing there, and
    setting it up (loading the system's CA certificates) costs ~25 ms per connection, most of a small
    table's run. Elsewhere the driver's default stands (TLS when the server offers it)."""
    host = url.host or "127.0.0.1"
    if host in LOOPBACK_HOSTS:
        kwargs.setdefault("ssl_disabled", True)
    if raw_text:
        kwargs.setdefault("conv", RAW_TEXT_CONV)
    try:
        return pymysql.connect(
            host=host,
            port=url.port or 3306,
            user=url.username or "root",
            password=url.password or "",
            database=url.database if database else None,
            charset="utf8mb4",
            autocommit=False,
            init_command=render("session_init").plain().strip(),
            local_infile=local_infile,
            **kwargs,
        )
    except pymysql.MySQLError as exc:
        raise ConnectionFailed(f"cannot connect to the {role} database {mask_url(url)}: {first_line(exc)}") from None


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, pymysql.err.MySQLError) and bool(exc.args) and exc.args[0] in TRANSIENT_ERRORS


#: The server refused a packet longer than max_allowed_packet (1153, 1301), or closed the connection while
#: sending one: PyMySQL then reports InterfaceError (0, '').
PACKET_ERRORS = frozenset({1153, 1301})


def is_packet_error(exc: BaseException) -> bool:
    """A row (or statement) longer than max_allowed_packet, on either side of a row-by-row copy."""
    if isinstance(exc, pymysql.err.InterfaceError):
        return not exc.args or exc.args[0] == 0
    return isinstance(exc, pymysql.MySQLError) and bool(exc.args) and exc.args[0] in PACKET_ERRORS


def run(conn: Any, statement: str, /, **context: Any) -> None:
    """Execute one statement that takes no values (session settings, snapshots)."""
    with conn.cursor() as cur:
        cur.execute(render(statement, **context).plain())


def acquire_lock(conn: Any, name: str, timeout: float) -> bool:
    """A named lock of this session (released when the session ends); False when the wait timed out."""
    return fetch_one(conn, render("lock_acquire"), {"lock_name": name, "timeout_seconds": timeout})[0] == 1


def scope(raw_schema: str) -> dict[str, Any]:
    """Template context naming where the ETL's own tables are (the replica's copies, the copy phase's
    tracking): the connection's own database, so nothing to name."""
    return {}


def key_list(keys: list[int]) -> tuple[int, ...]:
    """A list of keys as PyMySQL binds it into ``IN :keys``."""
    return tuple(keys)


def create_database(url: URL, name: Ident, *, role: str) -> bool:
    """CREATE DATABASE (etl migrate, for the replica); False when it already existed."""
    conn = connect(url, database=False, role=role)
    try:
        with conn.cursor() as cur:
            return cur.execute(render("create_database", database=name).plain()) == 1
    finally:
        conn.close()


# ---------------------------------------------------------------- reflection

def reflect_table(conn: Any, database: str, table: str) -> TableSchema | None:
    """The live definition of `database.table`, or None when the table does not exist.

    Names found here become :class:`etl.render.Ident` values: the only identifiers templates may print."""
    params = {"schema": database, "table": table}
    rows = fetch_all(conn, render("reflect_table"), params)
    if not rows:
        return None
    _, engine, estimate = rows[0]
    columns = tuple(
        Column(
            name=Ident(r[0]), data_type=r[1].lower(), column_type=r[2].lower(), nullable=r[3] == "YES",
            default=r[4], extra=(r[5] or "").lower(), charset=r[6], collation=r[7], precision=r[8],
            scale=r[9], char_length=r[10],
        )
        for r in fetch_all(conn, render("reflect_columns"), params)
    )
    key = tuple(Ident(r[0]) for r in fetch_all(conn, render("reflect_primary_key"), params))
    return TableSchema(schema=database, name=Ident(table), engine=engine, estimated_rows=int(estimate or 0),
                       columns=columns, primary_key=key)


def row_estimate(conn: Any, database: str, table: str) -> int | None:
    """The server's row estimate of a table (information_schema TABLE_ROWS): progress, small lookups."""
    row = fetch_one(conn, render("reflect_table"), {"schema": database, "table": table})
    return int(row[2]) if row and row[2] is not None else None


# ---------------------------------------------------------------- a source column in the replica

_WORD = re.compile(r"^[A-Za-z0-9_]+$")
_DDL_TYPE = re.compile(
    r"^([a-z]+(\(\d+(,\d+)?\))?( unsigned)?( zerofill)?|(enum|set)\('([^'\\]|'')*'(,'([^'\\]|'')*')*\))$"
)
_DEFAULT_LITERAL = re.compile(
    r"^(NULL|-?\d+(\.\d+)?([eE][-+]?\d+)?|'[^'\\]*'|current_timestamp(\(\d?\))?)$", re.IGNORECASE
)
#: Values LOAD DATA reads as the server printed them (numbers, dates and times, zero dates included).
_PLAIN_TEXT = INTEGER_TYPES + DATETIME_TYPES + ("decimal", "numeric", "year", "double", "real", "date", "time")


@dataclass(frozen=True)
class ReplicaColumn(Column):
    """A source column as the replica repeats it (the same declared type) and as the copy moves it."""

    @classmethod
    def of(cls, column: Column) -> "ReplicaColumn":
        return cls(**{f.name: getattr(column, f.name) for f in fields(Column)})

    @property
    def infile_kind(self) -> str:
        """How _macros/infile_text.sql.j2 writes the value: 'plain' (the server's own text), 'float'
        (through DOUBLE: the server prints FLOAT with 6 digits only) or 'raw' (its bytes, escaped)."""
        if self.data_type == "float":
            return "float"
        return "plain" if self.data_type in _PLAIN_TEXT else "raw"

    @property
    def ddl_type(self) -> str:
        """The declared type, checked to be of a plain shape before it is repeated in replica DDL."""
        if not _DDL_TYPE.match(self.column_type):
            raise SchemaError(f"column {self.name!r} has a type this tool cannot repeat safely: {self.column_type}")
        return self.column_type

    @property
    def ddl_charset(self) -> str | None:
        return self.charset if self.charset and _WORD.match(self.charset) else None

    @property
    def ddl_collation(self) -> str:
        if not self.collation or not _WORD.match(self.collation):
            raise SchemaError(f"column {self.name!r} has an unexpected collation {self.collation!r}")
        return self.collation

    @property
    def ddl_default(self) -> str | None:
        """A column default safe to repeat in replica DDL, or None to leave it out.

        Defaults cannot be binds in DDL, so only literals of a few strict shapes are repeated; anything
        else is dropped (the replica always receives explicit values from the source)."""
        if self.default is None:
            return None
        literal = self.default.strip()
        return literal if _DEFAULT_LITERAL.match(literal) else None


def map_table(schema: TableSchema) -> TableSchema:
    """The source table as the copy phase sees it: columns that know their replica DDL and infile text."""
    return replace(schema, columns=tuple(ReplicaColumn.of(c) for c in schema.columns))


# ---------------------------------------------------------------- LOAD DATA infile text, block by block

@contextlib.contextmanager
def block_files() -> Iterator[Callable[[bytes], str]]:
    """A private folder for the blocks LOAD DATA LOCAL INFILE reads; yields write(data) -> path. A block is
    its rows joined by newlines (mysql/copy_select): the last line's newline is added here."""
    folder = tempfile.mkdtemp(prefix="etl-copy-")
    path = os.path.join(folder, "block.txt")

    def write(data: bytes) -> str:
        with open(path, "wb") as handle:
            handle.write(data)
            handle.write(b"\n")
        return path

    try:
        yield write
    finally:
        shutil.rmtree(folder, ignore_errors=True)
