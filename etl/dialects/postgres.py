"""PostgreSQL: the analytics database (schema ``raw``), target of the load phase.

What is PostgreSQL's own: connections, which of its errors are transient, advisory locks, reflection of a
raw table, the one MySQL -> PostgreSQL type map (a data table: ``_INTEGER_MAP``, ``_PLAIN_MAP``), the COPY
text a load streams in (``_macros/copy_text.sql.j2``, rendered by the MySQL replica; each column's kind
from :func:`copy_kind`; fed to ``COPY ... FROM STDIN`` by :func:`copy_in`), and its templates,
``sql_templates/postgres/``.

The type map is decided by the declared type alone, never by the data seen (a ``tinyint(1)`` holding
only 0 and 1 is still a ``smallint``: OpenDental keeps enums in tinyints).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Any, Iterable, Iterator

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from sqlalchemy.engine import URL

from etl.db import fetch_all, fetch_one
from etl.errors import ConnectionFailed, SchemaError, first_line
from etl.render import Ident, Statement
from etl.render import render as _render_template
from etl.schema import (ADDRESS_TYPES, BINARY_TYPES, DATETIME_TYPES, INTEGER_TYPES, SPATIAL_TYPES, TEXT_TYPES, Column,
                        TableSchema)
from etl.settings import mask_url

NAME = "postgres"

#: The load and transform phases track in the raw schema; a run-history id is taken before any data moves
#: (next_run_id): it is also the load marker written into raw._etl_load_id.
ASSIGNS_HISTORY_IDS = True

#: Bytes psycopg2 asks the COPY feed for at a time (a block is handed over whole whatever this is).
COPY_CHUNK = 1 << 20


def render(statement: str, /, **context: Any) -> Statement:
    """``sql_templates/postgres/<statement>.sql.j2``."""
    return _render_template(f"{NAME}/{statement}", **context)


def connect(url: URL, *, database: str | None = None, role: str = "analytics") -> psycopg2.extensions.connection:
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
        raise ConnectionFailed(f"cannot connect to the {role} database {mask_url(url)}: {first_line(exc)}") from None
    conn.autocommit = False
    return conn


def is_transient(exc: BaseException) -> bool:
    """Deadlocks, serialization failures and lost connections; not a lock wait that timed out."""
    if isinstance(exc, (psycopg2.errors.DeadlockDetected, psycopg2.errors.SerializationFailure)):
        return True
    return isinstance(exc, psycopg2.OperationalError) and not isinstance(exc, psycopg2.errors.LockNotAvailable)


def run(conn: Any, statement: str, /, **context: Any) -> None:
    """Execute one statement that takes no values (session settings, DDL)."""
    with conn.cursor() as cur:
        cur.execute(render(statement, **context).plain())


def acquire_lock(conn: Any, name: str, timeout: float) -> bool:
    """An advisory lock of this session (released when the session ends); False when the wait timed out.
    The connection is put in autocommit: the lock outlives every transaction of the table's run."""
    conn.autocommit = True
    fetch_one(conn, render("lock_timeout"), {"lock_timeout": f"{max(int(timeout * 1000), 1)}ms"})
    try:
        fetch_one(conn, render("lock_acquire"), {"lock_name": name})
    except psycopg2.errors.LockNotAvailable:
        return False
    return True


def scope(raw_schema: str) -> dict[str, Any]:
    """Template context naming where the ETL's own tables are (raw.<table>, the load and transform
    tracking): the raw schema."""
    return {"schema": Ident(raw_schema)}


def key_list(keys: list[int]) -> list[int]:
    """A list of keys as psycopg2 binds it into ``= ANY(:keys)``."""
    return list(keys)


def create_database(url: URL, name: Ident, *, role: str) -> bool:
    """CREATE DATABASE (etl migrate, for the analytics database); False when it already existed. It
    refuses to run inside a transaction, so the session autocommits."""
    conn = connect(url, database="postgres", role=role)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(render("create_database", database=name).plain())
        return True
    except psycopg2.errors.DuplicateDatabase:
        return False
    finally:
        conn.close()


def create_schema(connection: Any, schema: str) -> None:
    """CREATE SCHEMA IF NOT EXISTS on a SQLAlchemy connection (etl migrate, the Alembic environment)."""
    connection.exec_driver_sql(render("create_schema", schema=Ident(schema)).plain())


def reflect_columns(conn: Any, schema: str, table: str) -> dict[str, str]:
    """Column name -> PostgreSQL type as format_type prints it; empty when the table does not exist."""
    return {r[0]: r[1] for r in fetch_all(conn, render("reflect_columns"), {"schema": schema, "table": table})}


# ---------------------------------------------------------------- the type map

# (MySQL type, unsigned?) -> PostgreSQL type. Unsigned integers widen to the next type that holds their
# whole range; bigint unsigned needs numeric(20).
_INTEGER_MAP = {
    ("tinyint", False): "smallint", ("tinyint", True): "smallint",
    ("smallint", False): "smallint", ("smallint", True): "integer",
    ("mediumint", False): "integer", ("mediumint", True): "integer",
    ("int", False): "integer", ("int", True): "bigint",
    ("integer", False): "integer", ("integer", True): "bigint",
    ("bigint", False): "bigint", ("bigint", True): "numeric(20)",
}
_PLAIN_MAP = {
    "double": "double precision", "real": "double precision", "float": "real",
    "datetime": "timestamp", "timestamp": "timestamp", "date": "date",
    # MySQL TIME is a duration of up to +-838:59:59, not a time of day.
    "time": "interval", "year": "smallint",
    "tinytext": "text", "text": "text", "mediumtext": "text", "longtext": "text",
    "enum": "text", "set": "text", "json": "jsonb",
    "binary": "bytea", "varbinary": "bytea", "tinyblob": "bytea", "blob": "bytea",
    "mediumblob": "bytea", "longblob": "bytea",
    # MariaDB's own: uuid (10.7), inet4 (10.10), inet6 (10.5); vector (11.7): its bytes, 4-byte floats.
    "uuid": "uuid", "inet4": "inet", "inet6": "inet", "vector": "bytea",
    # Spatial values as their standard WKB (ST_AsBinary), which PostGIS reads with ST_GeomFromWKB.
    **{t: "bytea" for t in SPATIAL_TYPES},
}
#: format_type's long names of the short names above (schema drift compares the two).
_LONG_NAMES = {"timestamp": "timestamp without time zone", "varchar": "character varying"}


def column_type(column: Column) -> str:
    """The PostgreSQL type of a MySQL source column in raw."""
    t = column.data_type
    if t in INTEGER_TYPES:
        return _INTEGER_MAP[(t, column.unsigned)]
    if t in ("decimal", "numeric"):
        return f"numeric({column.precision},{column.scale})"
    if t in ("char", "varchar"):
        # char(n) too becomes varchar(n): PostgreSQL's char pads with spaces, MySQL strips them. char(0)
        # (which holds '' or NULL) has no varchar(0) in PostgreSQL: text.
        return f"varchar({column.char_length})" if int(column.char_length or 0) > 0 else "text"
    if t == "bit":
        # bit(n) stays a bit string of the same length: every value exact, bit(64) included (no integer
        # type of PostgreSQL holds 64 unsigned bits); raw.c::bigint gives the number.
        return f"bit({column.precision})"
    if t in _PLAIN_MAP:
        return _PLAIN_MAP[t]
    raise SchemaError(f"column {column.name!r} has type {column.column_type}, which has no PostgreSQL mapping")


def same_type(expected: str, actual: str) -> bool:
    """Is `actual` (format_type of a raw column) the type map's `expected`?"""
    normal = expected
    for short, long in _LONG_NAMES.items():
        if normal.startswith(short):
            normal = long + normal[len(short):]
    return normal == actual


#: Integer types in the order each holds the previous one's values; numeric(20) holds bigint unsigned.
_INTEGER_RANK = {"smallint": 1, "integer": 2, "bigint": 3}
_INTEGER_DIGITS = {"smallint": 5, "integer": 10, "bigint": 19}
_SHAPE = re.compile(r"^(numeric|character varying|varchar)\((\d+)(?:,(\d+))?\)$")


def type_change(expected: str, actual: str) -> str:
    """How the type map's `expected` type relates to `actual` (format_type of a raw column): 'same',
    'wider' (every value of `actual` fits `expected` unchanged: ALTER COLUMN ... TYPE in place) or
    'narrower' (some value could be cut or converted: only a full refresh retypes the column)."""
    if same_type(expected, actual):
        return "same"
    new, old = _shape(expected), _shape(actual)
    if new is None or old is None:
        return "narrower"
    if new == old:
        return "same"  # numeric(20) is numeric(20,0)
    (t1, p1, s1), (t0, p0, s0) = new, old
    if t0 == "int" and t1 == "int":
        return "wider" if p1 >= p0 else "narrower"
    if t0 == "int" and t1 == "numeric":
        return "wider" if p1 - s1 >= p0 else "narrower"
    if t0 == "numeric" and t1 == "numeric":
        return "wider" if s1 >= s0 and p1 - s1 >= p0 - s0 else "narrower"
    if t0 == "varchar" and t1 == "varchar":
        return "wider" if p1 >= p0 else "narrower"
    if (t0, t1) in (("real", "double precision"),):
        return "wider"
    return "narrower"


def _shape(pg_type: str) -> tuple[str, int, int] | None:
    """(family, size, scale): integers by rank (their digits as numerics), varchar by length (text:
    unbounded), numeric by precision and scale."""
    if pg_type in _INTEGER_RANK:
        return "int", _INTEGER_DIGITS[pg_type], 0
    if pg_type == "text":
        return "varchar", 1 << 62, 0
    if pg_type in ("real", "double precision"):
        return pg_type, 0, 0
    found = _SHAPE.match(pg_type)
    if not found:
        return None
    family = "numeric" if found.group(1) == "numeric" else "varchar"
    return family, int(found.group(2)), int(found.group(3) or 0)


# ---------------------------------------------------------------- COPY text

def copy_kind(column: Column) -> str:
    """How a MySQL value is written as COPY text (see _macros/copy_text.sql.j2); 'unsupported' when the
    load cannot map the type. Verify's canonical text (_macros/canonical.sql.j2) follows the same kinds."""
    t = column.data_type
    if t in ("double", "real") and "(" in column.column_type:
        # double(m,d): the server prints d decimals, not the double it stored (-0.01 is stored as
        # -0.010000000000000009); through DOUBLE every bit arrives.
        return "float"
    if t in INTEGER_TYPES or t in ("decimal", "numeric", "year", "double", "real"):
        return "number"
    if t in ADDRESS_TYPES:
        return "plain"
    if t == "bit":
        return "bit"
    if t in SPATIAL_TYPES:
        return "spatial"
    if t == "vector":
        return "binary"
    if t == "float":
        return "float"
    if t in DATETIME_TYPES or t == "date":
        return "date"
    if t == "time":
        return "time"
    if t in BINARY_TYPES:
        return "binary"
    if t in TEXT_TYPES:
        return "text"
    return "unsupported"


@dataclass(frozen=True)
class PgColumn(Column):
    """A source column as raw holds it: its PostgreSQL type and its COPY text kind (what templates read)."""

    @classmethod
    def of(cls, column: Column) -> "PgColumn":
        return cls(**{f.name: getattr(column, f.name) for f in fields(Column)})

    @property
    def pg_type(self) -> str:
        return column_type(self)

    @property
    def copy_kind(self) -> str:
        return copy_kind(self)


def map_table(schema: TableSchema) -> TableSchema:
    """A source table as the load phase sees it: columns that know their raw type and COPY text. A column
    of a type the map does not know fails here, naming the table and the column, before anything is written."""
    columns = tuple(PgColumn.of(c) for c in schema.columns)
    for column in columns:
        try:
            column.pg_type
        except SchemaError as exc:
            raise SchemaError(f"table {schema.name!r}: {exc}") from None
    return replace(schema, columns=columns)


def map_columns(columns: Iterable[Column]) -> tuple[PgColumn, ...]:
    return tuple(PgColumn.of(c) for c in columns)


class ChunkReader:
    """A read()-able view of an iterator of byte chunks, for psycopg2's copy_expert: each read() returns
    the next non-empty chunk whole, whatever size was asked for; b"" at the end."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks

    def read(self, size: int = -1) -> bytes:
        for chunk in self._chunks:
            if chunk:
                return chunk
        return b""

    readline = read


def copy_in(cursor: Any, statement: Statement, chunks: Iterator[bytes]) -> None:
    """Stream COPY text (the chunks, concatenated) into ``COPY ... FROM STDIN`` (postgres/copy_from_stdin)."""
    cursor.copy_expert(statement.plain(), ChunkReader(chunks), size=COPY_CHUNK)
