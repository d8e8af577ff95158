"""etl/schema.py: a reflected source column, its MySQL type family, and whether it can carry a watermark.

The columns are built from the vendored fact sheet the same way the golden-file cases build them.
"""

from __future__ import annotations

import pytest

from etl.errors import SchemaError
from tests import snapshot_cases as sc


def fact(column_type: str, **extra):
    return sc.column_from_fact({"name": "c", "type": column_type, **extra})


def test_fact_sheet_columns_as_reflection_reports_them() -> None:
    text = fact("varchar(15)", collate="utf8mb3_bin", not_null=True, default="''")
    assert (text.charset, text.collation, text.char_length, text.nullable, text.default) == \
        ("utf8mb3", "utf8mb3_bin", 15, False, "''")
    plain_text = fact("varchar(100)")
    assert (plain_text.charset, plain_text.collation) == ("utf8mb4", "utf8mb4_general_ci")
    number = fact("tinyint(3) unsigned", auto_increment=True)
    assert (number.charset, number.collation, number.unsigned, number.extra) == (None, None, True, "auto_increment")
    assert fact("decimal(10,2)").precision == 10 and fact("decimal(10,2)").scale == 2


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


