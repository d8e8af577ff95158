"""etl/watermark.py: typed watermarks stored as exact canonical text."""

from __future__ import annotations

import datetime as dt

import pytest

from etl import watermark
from etl.errors import SchemaError


def test_integers_compare_as_integers_after_parse() -> None:
    assert "9" > "10"  # what a text comparison would do
    nine, ten = watermark.parse("9", "integer"), watermark.parse("10", "integer")
    assert nine == 9 and ten == 10 and nine < ten
    assert watermark.later(nine, ten) == 10
    assert max(watermark.parse(v, "integer") for v in ["9", "10", "100", "99"]) == 100


def test_large_integers_are_exact() -> None:
    big = "18446744073709551615"  # bigint unsigned max
    assert watermark.format(watermark.parse(big, "integer")) == big


@pytest.mark.parametrize("text", [
    "2024-03-05 07:08:09.123456",
    "2024-03-05 07:08:09.000001",
    "2024-03-05 07:08:09.500000",
    "2024-03-05 07:08:09",
])
def test_datetime_round_trip_is_exact(text: str) -> None:
    value = watermark.parse(text, "datetime")
    assert watermark.format(value) == text
    assert watermark.parse(watermark.format(value), "datetime") == value


def test_datetime_keeps_microseconds() -> None:
    value = watermark.parse("2024-03-05 07:08:09.123456", "datetime")
    assert value.microsecond == 123456
    assert value > watermark.parse("2024-03-05 07:08:09", "datetime")


def test_canonical_format_has_no_microseconds_part_when_zero() -> None:
    assert watermark.format(dt.datetime(2024, 3, 5, 7, 8, 9)) == "2024-03-05 07:08:09"
    assert watermark.format(dt.datetime(2024, 3, 5, 7, 8, 9, 10)) == "2024-03-05 07:08:09.000010"
    assert watermark.format(dt.datetime(2024, 3, 5)) == "2024-03-05 00:00:00"


def test_canonical_format_of_dates_and_integers() -> None:
    assert watermark.format(dt.date(2024, 3, 5)) == "2024-03-05"
    assert watermark.parse("2024-03-05", "date") == dt.date(2024, 3, 5)
    assert watermark.format(42) == "42"
    assert watermark.format(0) == "0"
    assert watermark.format(None) is None


def test_a_t_separator_is_read_but_written_with_a_space() -> None:
    assert watermark.format(watermark.parse("2024-03-05T07:08:09", "datetime")) == "2024-03-05 07:08:09"


@pytest.mark.parametrize("value", [True, False, 1.5, "10", object()])
def test_format_refuses_non_watermark_values(value) -> None:
    with pytest.raises(TypeError):
        watermark.format(value)


@pytest.mark.parametrize("kind", ["integer", "datetime", "date"])
def test_empty_and_missing_text_mean_no_watermark(kind: str) -> None:
    assert watermark.parse(None, kind) is None
    assert watermark.parse("", kind) is None


@pytest.mark.parametrize("text, kind", [
    ("yesterday", "datetime"),
    ("2024-13-01 00:00:00", "datetime"),
    ("0000-00-00 00:00:00", "datetime"),
    ("2024-02-30", "date"),
    ("0000-00-00", "date"),
    ("ten", "integer"),
    ("1.5", "integer"),
    ("2024-03-05", "integer"),
])
def test_parse_of_garbage_raises_schema_error(text: str, kind: str) -> None:
    with pytest.raises(SchemaError) as info:
        watermark.parse(text, kind)
    assert str(info.value) == f"stored watermark {text!r} is not a valid {kind}"


def test_parse_of_unknown_kind_raises_schema_error() -> None:
    with pytest.raises(SchemaError, match=r"^unknown watermark kind 'text'$"):
        watermark.parse("abc", "text")


@pytest.mark.parametrize("value", [
    dt.date(1, 1, 1),
    dt.datetime(1, 1, 1, 0, 0, 0),
    dt.date(1900, 1, 1),
    dt.datetime(1900, 1, 1, 0, 0, 0),
    dt.datetime(1900, 12, 31, 23, 59, 59),
    "0000-00-00",
    "0000-00-00 00:00:00",
    b"0000-00-00 00:00:00",
    None,
    True,
    False,
])
def test_sentinels_zero_dates_and_nulls_are_not_usable(value) -> None:
    assert not watermark.usable(value)


@pytest.mark.parametrize("value", [dt.date(1901, 1, 1), dt.datetime(2024, 3, 5, 7, 8, 9), 0, 10, 2**64])
def test_real_values_are_usable(value) -> None:
    assert watermark.usable(value)


def test_later() -> None:
    a, b = dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, 0, 0, 0, 1)
    assert watermark.later(a, b) == b and watermark.later(b, a) == b
    assert watermark.later(None, a) == a and watermark.later(a, None) == a
    assert watermark.later(None, None) is None
    assert watermark.later(9, 10) == 10


# --------------------------------------------------------------------------------------------------
# Properties

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(st.datetimes(min_value=dt.datetime(1901, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59, 999999)))
def test_any_datetime_round_trips_exactly(value: dt.datetime) -> None:
    text = watermark.format(value)
    assert watermark.parse(text, "datetime") == value
    assert ("." in text) == bool(value.microsecond)
    assert watermark.usable(value)


@given(st.integers(min_value=-(2**63), max_value=2**64 - 1))
def test_any_integer_round_trips_exactly(value: int) -> None:
    assert watermark.parse(watermark.format(value), "integer") == value


@given(st.lists(st.integers(min_value=0, max_value=10**12), min_size=1))
def test_parsed_integers_order_like_numbers(values: list[int]) -> None:
    texts = [watermark.format(v) for v in values]
    assert max(watermark.parse(t, "integer") for t in texts) == max(values)
