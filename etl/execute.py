"""Moving rows for a plan: keyset-paged reads, a file-like COPY feed, server clocks. No tables.yml here."""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Iterator, Sequence

import pymysql.converters

from etl import watermark
from etl.db import execute, fetch_one
from etl.errors import SchemaError
from etl.plan import Horizon, Plan
from etl.render import Ident, Statement

#: Encoders only, no decoders: data rows are read as the server's own text (or bytes for binary), so a
#: value is never reinterpreted by Python on its way through (doubles, TIME beyond 24h, zero dates).
RAW_TEXT_CONV = {k: v for k, v in pymysql.converters.conversions.items() if not isinstance(k, int)}


def parse_lead(value: Any, kind: str) -> Any:
    """A keyset/watermark value read as text, back to its type (zero dates stay text: unusable)."""
    if value is None or kind == "text":
        return value
    if isinstance(value, bytes):
        value = value.decode()
    try:
        return watermark.parse(value, kind)
    except SchemaError:
        return value


def keyset_batches(
    conn: Any,
    render_batch: Callable[[bool], Statement],
    plan: Plan,
    lead_kinds: Sequence[str],
    params: dict[str, Any],
) -> Iterator[list[tuple]]:
    """Yield batches of rows in plan order; each batch starts strictly after the last row of the previous.

    Rows are tuples whose first len(plan.lead) values are parsed by `lead_kinds`. Every batch is its own
    short query (MyISAM source tables are locked only while one batch is read).
    """
    order_len = len(plan.order)
    after: tuple | None = None
    first = render_batch(False)
    paged = render_batch(True)
    lead_len = len(lead_kinds)
    while True:
        statement = first if after is None else paged
        batch_params = dict(params, batch_size=plan.batch_size)
        if after is not None:
            batch_params.update({f"k{i}": v for i, v in enumerate(after)})
        with conn.cursor() as cur:
            execute(cur, statement, batch_params)
            raw = cur.fetchall()
        if not raw:
            return
        rows = [tuple(parse_lead(v, k) for v, k in zip(r[:lead_len], lead_kinds)) + tuple(r[lead_len:]) for r in raw]
        yield rows
        if len(raw) < plan.batch_size:
            return
        after = rows[-1][:order_len]


class ChunkReader:
    """A read()-able view of an iterator of byte chunks, for psycopg2's copy_expert."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks

    def read(self, size: int = -1) -> bytes:
        for chunk in self._chunks:
            if chunk:
                return chunk
        return b""

    readline = read


def floor_second(value: dt.datetime) -> dt.datetime:
    return value.replace(microsecond=0)


def capture_horizon(conn: Any, plan_columns: Sequence[Any], database: str, table: str,
                    render: Callable[..., Statement]) -> Horizon:
    """Upper bounds from the server's own clock and data, captured before the read starts."""
    utc_now, local_now, oldest_trx = fetch_one(conn, render("mysql/horizon"))
    utc_now, local_now = _as_datetime(utc_now), _as_datetime(local_now)
    lag = dt.timedelta(0)
    if oldest_trx is not None:
        # A transaction open since then may still commit rows stamped with its own (older) time.
        lag = max(dt.timedelta(0), utc_now - _as_datetime(oldest_trx))
    integer_max: dict[str, int | None] = {}
    for column in plan_columns:
        if column.watermark_kind == "integer":
            value = fetch_one(conn, render("mysql/max_value", database=Ident(database), table=Ident(table),
                                           column=column.name))[0]
            integer_max[column.name] = parse_lead(value, "integer")
    datetime_upper = floor_second(local_now - lag)
    return Horizon(
        timestamp_upper=floor_second(utc_now - lag),
        datetime_upper=datetime_upper,
        date_upper=datetime_upper.date(),
        integer_max=integer_max,
    )


def _as_datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, bytes):
        value = value.decode()
    return dt.datetime.fromisoformat(str(value))
