"""etl/tracking.py against a recording fake connection: what each phase's tracking writes, with which
values, and that the stored watermark text is canonical."""

from __future__ import annotations

import datetime as dt

import pytest

from etl import tracking
from etl.plan import Plan
from tests import snapshot_cases as sc
from tests.fakes import FakeConn


def plan(table: str, phase: str, strategy: str) -> Plan:
    return sc.plan_for(sc.demo_config()[table], phase, strategy)


def outcome_for(p: Plan) -> tracking.Outcome:
    return tracking.Outcome(plan=p, run_id="run-1", started_at=dt.datetime(2025, 6, 1, 12, 0, 0), history_id=7)


def store(phase: str) -> tracking.Store:
    return tracking.for_phase(sc.SETTINGS, phase)


def written(conn: FakeConn, table_part: str) -> list[dict]:
    return [params for sql, params in conn.executed if table_part in sql]


CASES = [(t, ph, st) for t, sts in (("patient", ("primary", "full")), ("appointment", ("fallback", "full")),
                                     ("securitylog", ("primary",)), ("definition", ("full",)))
         for st in sts for ph in ("copy", "load")]


@pytest.mark.parametrize("table, phase, strategy", CASES)
def test_the_final_write_records_status_watermarks_and_one_history_row(table: str, phase: str, strategy: str) -> None:
    conn = FakeConn()
    p = plan(table, phase, strategy)
    outcome = outcome_for(p)
    outcome.rows_read, outcome.rows_written = 12, 5
    store(phase).writer(p, final=True).write(conn, outcome)
    (status,) = written(conn, f"etl_{phase}_status")
    rows = "rows_copied" if phase == "copy" else "rows_loaded"
    assert (status["table_name"], status[f"{phase}_status"], status[rows]) == (table, "success", 5)
    assert status["primary_column_name"] == (p.primary.column if p.primary else None)
    (history,) = written(conn, "etl_run_history")
    assert (history["strategy"], history["status"], history["rows_read"], history["rows_written"]) == \
        (strategy, "success", 12, 5)
    assert history["phase"] == phase and history["run_id"] == "run-1"
    assert ("id" in history) == (phase == "load") and history.get("id", 7) == 7
    columns = [c for c in written(conn, "column_status") if "column_name" in c]
    clears = [c for c in written(conn, "column_status") if "column_name" not in c]
    assert [c["column_name"] for c in columns] == [b.column for b in p.fallback]
    assert len(clears) == (1 if strategy == "full" or not p.fallback else 0)


@pytest.mark.parametrize("table, phase, strategy", CASES)
def test_a_checkpoint_writes_the_status_running_and_no_history(table: str, phase: str, strategy: str) -> None:
    conn = FakeConn()
    p = plan(table, phase, strategy)
    writer = store(phase).writer(p, final=False)
    assert writer.history is None
    writer.write(conn, outcome_for(p), status="running")
    assert [s[f"{phase}_status"] for s in written(conn, f"etl_{phase}_status")] == ["running"]
    assert written(conn, "etl_run_history") == []


@pytest.mark.parametrize("table, phase, strategy", CASES)
def test_a_failure_is_recorded_in_its_own_transaction_keeping_the_watermark(table: str, phase: str,
                                                                             strategy: str) -> None:
    conn = FakeConn()
    store(phase).write_failure(conn, outcome_for(plan(table, phase, strategy)), "boom")
    assert conn.rollbacks == 1 and conn.commits == 1
    status, history = conn.executed
    assert status[1][f"{phase}_status"] == "failed" and "last_primary_value" not in status[1]
    assert (history[1]["status"], history[1]["error"], history[1]["watermark_after"]) == ("failed", "boom", None)


@pytest.mark.parametrize("phase", ["copy", "load"])
def test_read_state(phase: str) -> None:
    empty = store(phase).read_state(FakeConn(), phase, "patient")
    assert empty.status is None and empty.column_values == {}
    conn = FakeConn([[("success", "DateTStamp", "2025-05-01 10:00:00")], [("PatNum", "12")]])
    state = store(phase).read_state(conn, phase, "patient")
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
    store("copy").writer(p, final=True).write(conn, outcome)
    (status,) = written(conn, "etl_copy_status")
    assert status["last_primary_value"] == "2025-06-01 11:59:59.250000"
    assert status["primary_column_name"] == "DateTStamp"


def test_watermark_is_kept_when_nothing_new_was_read() -> None:
    p = plan("patient", "copy", "primary")
    conn = FakeConn()
    store("copy").writer(p, final=True).write(conn, outcome_for(p))
    (status,) = written(conn, "etl_copy_status")
    assert status["last_primary_value"] == sc.STORED["datetime"]


def test_fallback_writes_one_watermark_per_column() -> None:
    p = plan("appointment", "load", "fallback")
    conn = FakeConn()
    store("load").writer(p, final=True).write(conn, outcome_for(p))
    columns = [params for sql, params in conn.executed if "etl_load_column_status" in sql and "INSERT" in sql]
    assert [c["column_name"] for c in columns] == ["AptNum", "DateTStamp", "AptDateTime"]
    assert not any("DELETE" in sql for sql, _ in conn.executed)
