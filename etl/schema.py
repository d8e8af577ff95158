"""A source table as reflected from MySQL: columns with their declared types, the primary key.

Plain data, no connections: reflection is the MySQL dialect's (etl/dialects/mysql.py ``reflect_table``),
and what a column becomes in a target is the target dialect's (``map_table``: replica DDL and infile text
in mysql.py, the type map and COPY text in postgres.py). Here: the MySQL type families, and which columns
can carry a watermark.
"""

from __future__ import annotations

from dataclasses import dataclass

from etl.errors import SchemaError
from etl.render import Ident

INTEGER_TYPES = ("tinyint", "smallint", "mediumint", "int", "integer", "bigint")
DATETIME_TYPES = ("datetime", "timestamp")
TEXT_TYPES = ("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "json")
BINARY_TYPES = ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob")
#: Spatial types (MySQL 8 spells the collection geomcollection too).
SPATIAL_TYPES = ("geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon",
                 "geometrycollection", "geomcollection")
#: MariaDB's own types whose server text is their value: uuid (10.7), inet6 (10.5), inet4 (10.10).
ADDRESS_TYPES = ("uuid", "inet4", "inet6")
#: Types a watermark may be taken from: they sort the way their values grow.
ORDERABLE_TYPES = INTEGER_TYPES + DATETIME_TYPES + ("date",)


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
