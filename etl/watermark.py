"""The watermark rules, in one place: typed values, their canonical text, which values may become one.

A watermark is stored as text (``last_primary_value``) and always parsed back by its column's type
before it reaches a query, so ``9`` sorts before ``10`` and a datetime keeps its microseconds.

OpenDental writes ``0001-01-01`` and ``1900-01-01`` for "no date": no date or time before :data:`FLOOR`
ever becomes a watermark, nor does a zero date. SQL receives the rule as a value, never as text of its
own: the read templates bind the floor (``m<i>_floor``, see ``Plan.admission_params`` and the
``admissible`` macro of ``_macros/predicates.sql.j2``), and `etl transform` passes it to the dbt package
``etl_tracking`` as the var ``etl_watermark_floor`` (:func:`dbt_vars`; the package's default is the same
date). The window predicates (lower bound inclusive, upper bound exclusive for a still-open second or
inclusive for a copy watermark) are decided in etl/plan.py (``Bound``) and bound as values too.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Union

from etl.errors import SchemaError

Value = Union[int, dt.datetime, dt.date]

#: Dates that mean "no date" in OpenDental (0001-01-01, 1900-01-01) lie in or before this year.
SENTINEL_YEAR_MAX = 1900
#: The first date a watermark may hold.
FLOOR = dt.date(SENTINEL_YEAR_MAX + 1, 1, 1)


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


def floor(kind: str) -> dt.date | None:
    """The smallest value a watermark of this kind may hold, typed for a bind (None: integers, no floor)."""
    if kind == "datetime":
        return dt.datetime(FLOOR.year, FLOOR.month, FLOOR.day)
    if kind == "date":
        return FLOOR
    return None


def dbt_vars() -> dict[str, str]:
    """The rules as the dbt package etl_tracking receives them (macros/watermark.sql)."""
    return {"etl_watermark_floor": FLOOR.isoformat()}


def typed(value: Any, kind: str) -> Any:
    """A value read from the database as text or bytes (the data paths read raw text), typed by `kind`
    (a watermark kind); 'text' values, and values that do not parse (zero dates), stay as read."""
    if value is None or kind == "text":
        return value
    if isinstance(value, bytes):
        value = value.decode()
    try:
        return parse(value, kind)
    except SchemaError:
        return value


def usable(value: Any) -> bool:
    """False for NULLs, zero dates (the driver returns them as text) and sentinel dates like 0001-01-01."""
    if value is None or isinstance(value, (str, bytes)):
        return False
    if isinstance(value, (dt.date, dt.datetime)):
        return value.year >= FLOOR.year
    return isinstance(value, int) and not isinstance(value, bool)


def later(a: Value | None, b: Value | None) -> Value | None:
    """The later of two watermarks (None is 'nothing yet')."""
    if a is None:
        return b
    if b is None:
        return a
    return a if a >= b else b
