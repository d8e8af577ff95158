"""Typed watermarks: exact canonical text in the tracking tables, typed values in SQL binds.

A watermark is stored as text (``last_primary_value``) and always parsed back by its column's type
before it reaches a query, so ``9`` sorts before ``10`` and a datetime keeps its microseconds.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Union

from etl.errors import SchemaError

Value = Union[int, dt.datetime, dt.date]

#: Dates that mean "no date" in OpenDental; they never become a watermark.
SENTINEL_YEAR_MAX = 1900


def parse(text: str | None, kind: str) -> Value | None:
    if text is None or text == "":
        return None
    try:
        if kind == "integer":
            return int(text)
        if kind == "datetime":
            return dt.datetime.fromisoformat(text)
        if kind == "date":
            return dt.date.fromisoformat(text)
    except ValueError:
        raise SchemaError(f"stored watermark {text!r} is not a valid {kind}") from None
    raise SchemaError(f"unknown watermark kind {kind!r}")


def format(value: Value | None) -> str | None:
    """Canonical text: integers in decimal, datetimes ISO with a space and microseconds when non-zero."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("a boolean is not a watermark")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="microseconds" if value.microsecond else "seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"{value!r} is not a watermark value")


def usable(value: Any) -> bool:
    """False for NULLs, zero dates (the driver returns them as text) and sentinel dates like 0001-01-01."""
    if value is None or isinstance(value, (str, bytes)):
        return False
    if isinstance(value, (dt.date, dt.datetime)):
        return value.year > SENTINEL_YEAR_MAX
    return isinstance(value, int) and not isinstance(value, bool)


def later(a: Value | None, b: Value | None) -> Value | None:
    """The later of two watermarks (None is 'nothing yet')."""
    if a is None:
        return b
    if b is None:
        return a
    return a if a >= b else b
