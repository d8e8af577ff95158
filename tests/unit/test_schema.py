"""etl/schema.py: the MySQL -> PostgreSQL type map and the column properties the templates rely on.

The columns are built from the vendored fact sheet the same way the golden-file cases build them.
"""

from __future__ import annotations

import pytest

from etl.errors import SchemaError
from etl.render import Ident
from etl.schema import Column
from tests import snapshot_cases as sc


def fact(column_type: str, **extra) -> Column:
    return sc.column_from_fact({"name": "c", "type": column_type, **extra})


@pytest.mark.parametrize("column_type, data_type, pg_type", [
    ("tinyint(4)", "tinyint", "smallint"),
    ("tinyint(3) unsigned", "tinyint", "smallint"),
    ("tinyint(1)", "tinyint", "smallint"),
    ("smallint(6)", "smallint", "smallint"),
    ("smallint(5) unsigned", "smallint", "integer"),
    ("int(11)", "int", "integer"),
    ("int(10) unsigned", "int", "bigint"),
    ("bigint(20)", "bigint", "bigint"),
    ("bigint(20) unsigned", "bigint", "numeric(20)"),
    ("double", "double", "double precision"),
    ("float", "float", "real"),
    ("decimal(10,2)", "decimal", "numeric(10,2)"),
    ("char(2)", "char", "varchar(2)"),
    ("varchar(255)", "varchar", "varchar(255)"),
    ("text", "text", "text"),
    ("date", "date", "date"),
    ("datetime", "datetime", "timestamp"),
    ("timestamp", "timestamp", "timestamp"),
    ("time", "time", "interval"),
])
def test_type_map(column_type: str, data_type: str, pg_type: str) -> None:
    column = fact(column_type)
    assert column.data_type == data_type and column.column_type == column_type
    assert column.pg_type == pg_type


def test_fact_sheet_columns_as_reflection_reports_them() -> None:
    text = fact("varchar(15)", collate="utf8mb3_bin", not_null=True, default="''")
    assert (text.charset, text.collation, text.char_length, text.nullable, text.default) == \
        ("utf8mb3", "utf8mb3_bin", 15, False, "''")
    plain_text = fact("varchar(100)")
    assert (plain_text.charset, plain_text.collation) == ("utf8mb4", "utf8mb4_general_ci")
    number = fact("tinyint(3) unsigned", auto_increment=True)
    assert (number.charset, number.collation, number.unsigned, number.extra) == (None, None, True, "auto_increment")
    assert fact("decimal(10,2)").precision == 10 and fact("decimal(10,2)").scale == 2


def test_every_demo_column_maps_to_postgres() -> None:
    for name in sc.demo_facts():
        for column in sc.table_schema(name).columns:
            assert column.pg_type and column.copy_kind != "unsupported", (name, column.name)
            assert column.ddl_type == column.column_type


@pytest.mark.parametrize("column_type, kind", [
    ("bigint(20)", "integer"), ("tinyint(3) unsigned", "integer"), ("datetime", "datetime"),
    ("timestamp", "datetime"), ("date", "date"),
])
def test_watermark_kind(column_type: str, kind: str) -> None:
    column = fact(column_type)
    assert column.orderable and column.watermark_kind == kind


@pytest.mark.parametrize("column_type", ["varchar(255)", "double", "time", "text"])
def test_non_orderable_columns_cannot_carry_a_watermark(column_type: str) -> None:
    column = fact(column_type)
    assert not column.orderable
    with pytest.raises(SchemaError, match=r"^column 'c' of type .* cannot carry a watermark"):
        column.watermark_kind


@pytest.mark.parametrize("column_type, kind", [
    ("bigint(20)", "number"), ("double", "number"), ("float", "float"), ("date", "date"), ("datetime", "date"),
    ("time", "time"), ("varchar(10)", "text"), ("text", "text"),
])
def test_copy_kind(column_type: str, kind: str) -> None:
    assert fact(column_type).copy_kind == kind


def test_unmapped_type_raises_naming_the_column() -> None:
    column = Column(name=Ident("Shape"), data_type="geometry", column_type="geometry", nullable=True, default=None,
                    extra="", charset=None, collation=None, precision=None, scale=None, char_length=None)
    with pytest.raises(SchemaError, match=r"^column 'Shape' has type geometry, which has no PostgreSQL mapping$"):
        column.pg_type
    assert column.copy_kind == "unsupported"


@pytest.mark.parametrize("column_type", ["int(11) default 1", "varchar(10); drop", "enum('a\\'b')"])
def test_ddl_type_refuses_odd_shapes(column_type: str) -> None:
    column = Column(name=Ident("c"), data_type="int", column_type=column_type, nullable=True, default=None, extra="",
                    charset=None, collation=None, precision=None, scale=None, char_length=None)
    with pytest.raises(SchemaError, match="cannot repeat safely"):
        column.ddl_type


@pytest.mark.parametrize("default, kept", [
    ("NULL", "NULL"), ("0", "0"), ("-1.5", "-1.5"), ("''", "''"), ("'0001-01-01'", "'0001-01-01'"),
    ("current_timestamp()", "current_timestamp()"), ("1; DROP TABLE t", None), ("'a\\'b'", None), (None, None),
])
def test_ddl_default_keeps_only_plain_literals(default, kept) -> None:
    assert fact("int(11)", default=default).ddl_default == kept
