"""Live schema reflection and the one MySQL -> PostgreSQL type map.

Names found here become :class:`etl.render.Ident` values: the only identifiers templates may print.
The type map is decided by the declared type alone, never by the data seen (a ``tinyint(1)`` holding only
0 and 1 is still a ``smallint``: OpenDental keeps enums in tinyints).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from etl.db import fetch_all
from etl.errors import SchemaError
from etl.render import Ident, render

INTEGER_TYPES = ("tinyint", "smallint", "mediumint", "int", "integer", "bigint")
DATETIME_TYPES = ("datetime", "timestamp")
TEXT_TYPES = ("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "json")
BINARY_TYPES = ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob")
#: Types a watermark may be taken from: they sort the way their values grow.
ORDERABLE_TYPES = INTEGER_TYPES + DATETIME_TYPES + ("date",)

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
}


@dataclass(frozen=True)
class Column:
    name: Ident
    data_type: str          # lower-case base type: 'bigint', 'varchar', 'timestamp'
    column_type: str        # as declared: 'tinyint(3) unsigned', 'varchar(255)'
    nullable: bool
    default: str | None     # the SQL literal information_schema reports (MariaDB quotes strings)
    extra: str
    charset: str | None
    collation: str | None
    precision: int | None
    scale: int | None
    char_length: int | None

    @property
    def unsigned(self) -> bool:
        return "unsigned" in self.column_type

    @property
    def orderable(self) -> bool:
        return self.data_type in ORDERABLE_TYPES

    @property
    def watermark_kind(self) -> str:
        """How a watermark of this column is parsed and formatted: 'integer', 'datetime' or 'date'."""
        if self.data_type in INTEGER_TYPES:
            return "integer"
        if self.data_type in DATETIME_TYPES:
            return "datetime"
        if self.data_type == "date":
            return "date"
        raise SchemaError(f"column {self.name!r} of type {self.column_type} cannot carry a watermark "
                          "(expected an integer, date, datetime or timestamp column)")

    @property
    def copy_kind(self) -> str:
        """How the load SELECT renders the value as COPY text (see _macros/copy_text.sql.j2)."""
        t = self.data_type
        if t in INTEGER_TYPES or t in ("decimal", "numeric", "year", "double", "real"):
            return "number"
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
        return ddl_default(self)

    @property
    def pg_type(self) -> str:
        t = self.data_type
        if t in INTEGER_TYPES:
            return _INTEGER_MAP[(t, self.unsigned)]
        if t in ("decimal", "numeric"):
            return f"numeric({self.precision},{self.scale})"
        if t in ("char", "varchar"):
            # char(n) too becomes varchar(n): PostgreSQL's char pads with spaces, MySQL strips them.
            return f"varchar({self.char_length})"
        if t in _PLAIN_MAP:
            return _PLAIN_MAP[t]
        raise SchemaError(f"column {self.name!r} has type {self.column_type}, which has no PostgreSQL mapping")


@dataclass(frozen=True)
class TableSchema:
    schema: str
    name: Ident
    engine: str | None
    estimated_rows: int
    columns: tuple[Column, ...]
    primary_key: tuple[Ident, ...]

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise SchemaError(f"column {name!r} does not exist in table {self.schema}.{self.name}")

    def has_column(self, name: str) -> bool:
        return any(c.name == name for c in self.columns)

    @property
    def column_names(self) -> tuple[Ident, ...]:
        return tuple(c.name for c in self.columns)


def reflect_mysql_table(conn: Any, schema: str, table: str) -> TableSchema | None:
    """The live definition of `schema.table`, or None when the table does not exist."""
    params = {"schema": schema, "table": table}
    rows = fetch_all(conn, render("mysql/reflect_table"), params)
    if not rows:
        return None
    _, engine, estimate = rows[0]
    columns = tuple(
        Column(
            name=Ident(r[0]), data_type=r[1].lower(), column_type=r[2].lower(), nullable=r[3] == "YES",
            default=r[4], extra=(r[5] or "").lower(), charset=r[6], collation=r[7], precision=r[8],
            scale=r[9], char_length=r[10],
        )
        for r in fetch_all(conn, render("mysql/reflect_columns"), params)
    )
    key = tuple(Ident(r[0]) for r in fetch_all(conn, render("mysql/reflect_primary_key"), params))
    return TableSchema(schema=schema, name=Ident(table), engine=engine, estimated_rows=int(estimate or 0),
                       columns=columns, primary_key=key)


def mysql_indexes(conn: Any, schema: str, table: str) -> dict[str, tuple[str, ...]]:
    indexes: dict[str, list[str]] = {}
    for name, column, _ in fetch_all(conn, render("mysql/reflect_indexes"), {"schema": schema, "table": table}):
        indexes.setdefault(name, []).append(column)
    return {k: tuple(v) for k, v in indexes.items()}


def reflect_pg_columns(conn: Any, schema: str, table: str) -> dict[str, str]:
    """Column name -> PostgreSQL type as format_type prints it; empty when the table does not exist."""
    return {r[0]: r[1] for r in fetch_all(conn, render("postgres/reflect_columns"), {"schema": schema, "table": table})}


_WORD = re.compile(r"^[A-Za-z0-9_]+$")
_DDL_TYPE = re.compile(
    r"^([a-z]+(\(\d+(,\d+)?\))?( unsigned)?( zerofill)?|(enum|set)\('([^'\\]|'')*'(,'([^'\\]|'')*')*\))$"
)
_DEFAULT_LITERAL = re.compile(
    r"^(NULL|-?\d+(\.\d+)?([eE][-+]?\d+)?|'[^'\\]*'|current_timestamp(\(\d?\))?)$", re.IGNORECASE
)


def ddl_default(column: Column) -> str | None:
    """A column default safe to repeat in replica DDL, or None to leave it out.

    Defaults cannot be binds in DDL, so only literals of a few strict shapes are repeated; anything else
    is dropped (the replica always receives explicit values from the source).
    """
    if column.default is None:
        return None
    literal = column.default.strip()
    return literal if _DEFAULT_LITERAL.match(literal) else None
