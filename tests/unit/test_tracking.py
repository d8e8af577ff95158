"""etl/tracking.py against a recording fake connection: every tracking statement passes the two-way bind
check with the parameters its call site builds, and the stored watermark text is canonical."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from etl import tracking
from etl.plan import Plan
from tests import snapshot_cases as sc


class FakeCursor:
    def __init__(self, conn: "FakeConn"):
        self.conn = conn

    def __enter__(self) -> "FakeCursor":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def execute(self, sql: str, params: dict[str, Any]) -> None:
        self.conn.executed.append((sql, dict(params)))

    def fetchone(self):
        return self.conn.rows.pop(0) if self.conn.rows else None

    def fetchall(self):
        return self.conn.all_rows


class FakeConn:
    def __init__(self, rows=None, all_rows=None):
        self.executed: list[tuple[str, dict[str, Any]]] = []
        self.rows = list(rows or [])
        self.all_rows = list(all_rows or [])
        self.commits = self.rollbacks = 0

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def commit(self) -> None:
        self.commits += 1

    def rollback(self) -> None:
        self.rollbacks += 1


def plan(table: str, phase: str, strategy: str) -> Plan:
    return sc.plan_for(sc.demo_config()[table], phase, strategy)


def outcome_for(p: Plan) -> tracking.Outcome:
    return tracking.Outcome(plan=p, run_id="run-1", started_at=dt.datetime(2025, 6, 1, 12, 0, 0), history_id=7)


CASES = [(t, ph, st) for t, sts in (("patient", ("primary", "full")), ("appointment", ("fallback", "full")),
                                     ("securitylog", ("primary",)), ("definition", ("full",)))
         for st in sts for ph in ("copy", "load")]


@pytest.mark.parametrize("table, phase, strategy", CASES)
def test_write_success_binds_match(table: str, phase: str, strategy: str) -> None:
    conn = FakeConn()
    outcome = outcome_for(plan(table, phase, strategy))
    tracking.write_success(conn, outcome, schema="raw" if phase == "load" else None)
    assert conn.executed, "nothing written"
    for sql, params in conn.executed:  # reached the driver: converted, and every parameter is used
        assert not re.search(r"(?<![:\w]):[A-Za-z_]", sql)
        assert set(re.findall(r"%\((\w+)\)s", sql)) == set(params)
    statuses = [params for sql, params in conn.executed if f"etl_{phase}_status" in sql and "INSERT" in sql]
    assert len(statuses) == 1
    history = [params for sql, params in conn.executed if "etl_run_history" in sql]
    assert len(history) == 1 and history[0]["strategy"] == strategy


@pytest.mark.parametrize("table, phase, strategy", CASES)
def test_write_failure_binds_match(table: str, phase: str, strategy: str) -> None:
    conn = FakeConn()
    tracking.write_failure(conn, outcome_for(plan(table, phase, strategy)), "boom",
                           schema="raw" if phase == "load" else None)
    assert conn.rollbacks == 1 and conn.commits == 1
    assert [p.get(f"{phase}_status") for _, p in conn.executed][0] == "failed"


@pytest.mark.parametrize("phase", ["copy", "load"])
def test_read_state(phase: str) -> None:
    schema = "raw" if phase == "load" else None
    empty = tracking.read_state(FakeConn(), phase, "patient", schema=schema)
    assert empty.status is None and empty.column_values == {}
    conn = FakeConn(rows=[("success", "DateTStamp", "2025-05-01 10:00:00")], all_rows=[("PatNum", "12")])
    state = tracking.read_state(conn, phase, "patient", schema=schema)
    assert (state.status, state.primary_column_name, state.last_primary_value) == \
        ("success", "DateTStamp", "2025-05-01 10:00:00")
    assert state.column_values == {"PatNum": "12"}
    assert all(params == {"table_name": "patient"} for _, params in conn.executed)


def test_new_primary_watermark_is_the_largest_admitted_value_in_canonical_text() -> None:
    p = plan("patient", "copy", "primary")
    outcome = outcome_for(p)
    upper = p.primary.upper
    outcome.observe("DateTStamp", dt.datetime(2025, 6, 1, 11, 59, 59, 250000))
    outcome.observe("DateTStamp", upper)                      # the open second: not admitted
    outcome.observe("DateTStamp", dt.datetime(1, 1, 1))       # sentinel: not admitted
    outcome.observe("DateTStamp", dt.datetime(2025, 6, 1, 8))  # older: not the maximum
    conn = FakeConn()
    tracking.write_success(conn, outcome)
    status = next(params for sql, params in conn.executed if "etl_copy_status" in sql)
    assert status["last_primary_value"] == "2025-06-01 11:59:59.250000"
    assert status["primary_column_name"] == "DateTStamp"


def test_watermark_is_kept_when_nothing_new_was_read() -> None:
    p = plan("patient", "copy", "primary")
    conn = FakeConn()
    tracking.write_success(conn, outcome_for(p))
    status = next(params for sql, params in conn.executed if "etl_copy_status" in sql)
    assert status["last_primary_value"] == sc.STORED["datetime"]


def test_fallback_writes_one_watermark_per_column() -> None:
    p = plan("appointment", "load", "fallback")
    conn = FakeConn()
    tracking.write_success(conn, outcome_for(p), schema="raw")
    columns = [params for sql, params in conn.executed if "etl_load_column_status" in sql and "INSERT" in sql]
    assert [c["column_name"] for c in columns] == ["AptNum", "DateTStamp", "AptDateTime"]
    assert not any("DELETE" in sql for sql, _ in conn.executed)
