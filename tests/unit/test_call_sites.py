"""The runtime's statements outside recipes, run by their own code against fake connections
(tests/call_sites.py): what the code makes of the databases' answers, and what it sends them."""

from __future__ import annotations

import datetime as dt

import pytest

from etl import tracking
from etl.plan import RESCAN_LIMIT
from tests import call_sites as cs


def _driver_sql(conn) -> list[str]:
    """The SQL the fake received, in order (the bind check itself is Statement.to_dbapi's, on every call)."""
    return conn.sql


def test_reflection_knows_mariadb_json_by_its_check() -> None:
    schema = cs.json_reflection()["schema"]
    assert [(c.name, c.data_type, c.column_type) for c in schema.columns] == [
        ("Id", "bigint", "bigint(20)"), ("Doc", "json", "longtext"), ("Note", "longtext", "longtext")]


def test_reflection_turns_information_schema_rows_into_checked_columns() -> None:
    found = cs.reflection()
    schema = found["schema"]
    assert (schema.name, schema.engine, schema.estimated_rows, schema.primary_key) == ("patient", "MyISAM", 1234, ("PatNum",))
    pat, name = schema.columns
    assert (pat.name, pat.data_type, pat.nullable, pat.extra, pat.precision) == ("PatNum", "bigint", False, "auto_increment", 19)
    assert (name.column_type, name.nullable, name.default, name.charset, name.char_length) == \
        ("varchar(100)", True, "''", "utf8mb4", 100)
    assert found["estimate"] == 1234 and found["missing"] is None
    assert found["raw"] == {"PatNum": "bigint", "LName": "character varying(100)"}
    for conn in found["conns"]:
        _driver_sql(conn)


def test_horizon_is_the_servers_clock_held_back_by_the_oldest_writer() -> None:
    found = cs.horizon()
    horizon = found["horizon"]
    # 30.25 s behind the clock: the oldest open writer started then; a still-open second is never read.
    assert horizon.timestamp_upper == dt.datetime(2025, 6, 1, 11, 59, 30)
    assert horizon.datetime_upper == dt.datetime(2025, 6, 1, 13, 59, 30)
    assert horizon.date_upper == dt.date(2025, 6, 1)
    assert horizon.integer_max == {"PatNum": 900000}
    assert any("MAX(`PatNum`)" in sql for sql in _driver_sql(found["conn"]))


def test_resume_point_and_target_state() -> None:
    found = cs.resume_and_target()
    lower = found["plan"].primary.lower
    assert found["resume"] == (lower, 4242)   # raw answered an integer key
    assert found["copy_resume"] == (lower, 4243)  # the replica's key is text: typed by the key's kind
    assert found["quiet"] is None            # a second of 3 rows is read again
    assert found["states"] == {"new": "new", "mysql empty": "empty", "mysql populated": "populated",
                               "postgres empty": "empty", "postgres populated": "populated"}
    assert found["infile"] == (True, False)
    assert RESCAN_LIMIT == 1000


def test_locks_and_session_statements() -> None:
    found = cs.locks_and_sessions()
    assert found["mysql"] == (True, False)
    assert found["postgres"] is True and found["pg"].autocommit  # the lock outlives the run's transactions
    assert found["pg"].executed[0][1] == {"lock_timeout": "500ms"}
    assert found["got"].executed[0][1] == {"lock_name": "etl:db:copy:patient", "timeout_seconds": 5}
    assert _driver_sql(found["session"]) == ["SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED\n",
                                             "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY\n"]


def test_connections_migrate_and_the_fast_revision_check() -> None:
    found = cs.connections_and_ddl()
    assert found["init_command"] == "SET time_zone = '+00:00', sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION', NAMES utf8mb4"
    assert found["created"] == {"mysql": True, "revision": "0004_widen_rows", "postgres": True,
                                "pg revision": "0005_transform_load_id"}
    assert found["schema"].sql == ['CREATE SCHEMA IF NOT EXISTS "raw"\n']


def test_tracking_store_reads_and_writes_of_both_databases() -> None:
    found = cs.tracking_stores()
    for phase, table_of in (("copy", "etl_copy_status"), ("load", "etl_load_status")):
        state = found[f"{phase} state"]
        assert (state.status, state.column_values) == ("success", {"AptNum": "600"})
        sql = _driver_sql(found[f"{phase} writes"])
        params = [p for _, p in found[f"{phase} writes"].executed]
        statuses = [p for s, p in zip(sql, params) if table_of in s and "INSERT" in s]
        # checkpoint, final, failure: running, success, failed; the failure keeps the stored watermark
        assert [p.get(f"{phase}_status") for p in statuses] == ["running", "success", "failed"]
        histories = [p for s, p in zip(sql, params) if "etl_run_history" in s]
        assert [h["status"] for h in histories] == ["success", "failed"]
        assert len(histories[1]["error"]) == tracking.ERROR_LIMIT
        assert ("id" in histories[0]) == (phase == "load") and all(h.get("id", 7) == 7 for h in histories)
        # the OR fallback keeps one watermark per column (3 of appointment), written at each write
        columns = [p["column_name"] for s, p in zip(sql, params) if "column_status" in s]
        assert columns == ["AptNum", "DateTStamp", "AptDateTime"] * 2
        assert found[f"{phase} init"] == 2 and "appointment" in found[f"{phase} all"]
        assert found[f"{phase} feed"] == 41
        assert found[f"{phase} feed conn"].executed[-1][1] == {
            "table_name": "appointment", "column_name": tracking.FEED_COLUMN, "last_value": "42"}
        history = found[f"{phase} history"].executed
        assert history[-1][1]["phase"] == "reconcile"
        assert (history[-1][1].get("id") == 99) == (phase == "load")  # PostgreSQL: nextval first
    assert found["transform init"] == 0 and found["transform all"]["patient"][1] == "skipped"
    assert found["transform state"][0:2] == (15, 12)
    assert found["transform recorded"][4] == 15
    assert found["transform conn"].executed[-1][1]["transformation_status"] == "failed"


def test_transform_reads_the_window_of_loads_and_whether_rows_are_pending() -> None:
    found = cs.transform_window()
    window = found["window"]
    assert (window.through, window.after, window.loaded, window.pending) == (15, 12, True, True)
    assert found["conn"].executed[-1][1] == {"through": 15, "after": 12, "table_name": "patient"}
    never = found["never"]
    assert (never.loaded, never.pending) == (False, False)


@pytest.mark.parametrize("name", ["replica", "raw"])
def test_verify_buckets_and_reconcile_deletes_in_batches(name: str) -> None:
    found = cs.verify_sides()[name]
    assert found["range"] == (1, 9000, 8000)
    assert found["buckets"] == {0: (5, 123), 3: (1, 7)} and found["rows"] == {10: 77}
    sql = _driver_sql(found["conn"])
    deletes = [p["keys"] for s, p in zip(sql, (p for _, p in found["conn"].executed)) if s.startswith("DELETE")]
    assert [len(k) for k in deletes] == [1000, 1000, 500]
    assert isinstance(deletes[0], tuple if name == "replica" else list)  # IN :keys vs = ANY(:keys)
    assert found["deleted"] == 3 * 2



def test_verify_compares_a_staging_models_keys_up_to_the_last_run_it_took() -> None:
    found = cs.staging_keys()
    result = found["result"]
    assert (result["status"], result["missing"], result["extra"], result["through"]) == ("drift", 0, 2, 15)
    assert result["examples"] == {"missing": [], "extra": [7, 9]}
    sql, params = found["conn"].executed[-1]
    assert params == {"through": 15, "table_name": "patient", "examples": 10}
    assert '"staging"."stg_patient"' in sql and '"raw"."patient"' in sql and "etl_deleted_keys" in sql


def test_discover_reads_the_schema_in_four_queries_then_the_opendental_version() -> None:
    out = cs.discover_source()
    source = out["source"]
    assert (source.database, source.server_version, source.opendental_version) == (
        "opendental", "10.11.6-MariaDB", "24.2.15.0")
    patient = source.tables["patient"]
    assert (patient.rows, patient.avg_row_length, patient.primary_key) == (35135, 412, ("PatNum",))
    assert [c.name for c in patient.columns] == ["PatNum", "LName", "DateTStamp"]
    assert "on update" in patient.column("DateTStamp").extra
    conn, live = out["conns"]
    assert len(conn.executed) == 5 and conn.executed[-1][1] == {"pref_name": "DataBaseVersion"}
    assert conn.rollbacks == 1
    # dbt-sources: the configured tables only, through the type map
    assert out["columns"] == {"patient": [("PatNum", "bigint"), ("LName", "varchar(100)"), ("DateTStamp", "timestamp")]}


def test_history_merges_both_databases_newest_first_with_zones_and_durations() -> None:
    found = cs.history_and_status()
    history = found["history"]
    assert [(h["database"], h["phase"]) for h in history] == [("replica", "copy"), ("analytics", "load")]
    copy, load = history
    assert copy["started_at"] == "2025-06-01 02:15:00 UTC" and copy["seconds"] == 2.5
    assert load["seconds"] == 2.88  # finished 04:15:03+02:00 = 02:15:03 UTC
    replica_sql = found["conns"]["replica"].executed
    select = next((sql, params) for sql, params in replica_sql if "FROM etl_run_history" in sql
                  and "ROW_NUMBER" not in sql)
    assert "table_name = " in select[0] and "phase = " not in select[0]
    assert select[1]["since"] == dt.datetime(2025, 5, 1) and select[1]["table_name"] == "patient"
    assert "patient" in found["history_text"] and "2025-05-31 00:00:00 -> 2025-06-01 00:00:00" in found["history_text"]


def test_status_shows_last_success_last_failure_and_rows_last_and_total() -> None:
    report = cs.history_and_status()["report"]
    patient = next(t for t in report["tables"] if t["table"] == "patient")
    copy, load = patient["copy"], patient["load"]
    assert copy["status"] == "failed"
    assert (copy["last_success"], copy["last_failure"]) == ("2025-06-01 02:15:00 UTC", "2025-06-02 02:15:00 UTC")
    assert copy["last_error"] == "SchemaError: gone"
    assert (copy["rows_last_run"], copy["rows_total"]) == (4, 120)
    assert load["last_run"] == "2025-06-01 02:15:00 UTC" and load["last_failure"] is None
    text = cs.history_and_status()["text"]
    assert "4/120" in text and "SchemaError: gone" in text


def test_status_shows_the_rows_the_copy_rejected_with_the_setting_to_raise() -> None:
    found = cs.history_and_status()
    patient = next(t for t in found["report"]["tables"] if t["table"] == "patient")
    line = ("copy patient: the row with key ['7'] was not copied: its value of LName holds 20,971,520 bytes; "
            "raise max_allowed_packet on the replica (16,777,216 bytes) above it (retried on every run)")
    assert patient["rejected"] == [line]
    assert f"patient: 1 row(s) rejected by the copy; {line}" in found["text"].splitlines()
    assert all(not t["rejected"] for t in found["report"]["tables"] if t["table"] != "patient")


@pytest.mark.parametrize("text,expected", [
    ("2d", dt.datetime(2025, 5, 30, 12, 0)), ("12h", dt.datetime(2025, 6, 1, 0, 0)),
    ("30m", dt.datetime(2025, 6, 1, 11, 30)), ("2025-05-01", dt.datetime(2025, 5, 1)),
    ("2025-05-01 02:00", dt.datetime(2025, 5, 1, 2, 0)), ("2025-05-01T04:00:00+02:00", dt.datetime(2025, 5, 1, 2, 0)),
])
def test_since_is_an_age_or_a_utc_moment(text, expected) -> None:
    from etl.status import parse_since

    assert parse_since(text, now=dt.datetime(2025, 6, 1, 12, 0)) == expected


def test_a_bad_since_or_phase_is_a_usage_error() -> None:
    from etl.errors import ConfigError
    from etl.status import history, parse_since

    with pytest.raises(ConfigError, match="--since 'yesterday'"):
        parse_since("yesterday")
    with pytest.raises(ConfigError, match="--phase"):
        history(cs.SETTINGS, phase="nope")


def test_a_stop_kills_the_running_query_by_its_thread_id() -> None:
    killer = cs.stop_cancels()["killer"]
    assert [(sql.strip(), params) for sql, params in killer.executed] == [("KILL QUERY %(thread_id)s", {"thread_id": 4242})]
    assert killer.closed


def test_a_long_statement_reports_the_rows_its_transaction_wrote() -> None:
    found = cs.stop_cancels()
    assert found["polled"] == [1234, None]  # no row: not started yet (or no PROCESS grant)
    assert all(params == {"thread_id": 4242} for _, params in found["watcher"].executed)
    assert found["watcher"].closed


@pytest.mark.parametrize("phase,status_column", [("copy", "copy_status"), ("load", "load_status")])
def test_a_failure_before_any_plan_is_a_failed_status_and_a_history_row(phase, status_column) -> None:
    conn = cs.tracking_stores()[f"{phase} unplanned"]
    mark, history = conn.executed[0], conn.executed[-1]
    assert mark[1][status_column] == "failed" and mark[1]["table_name"] == "appointment"
    assert "etl_run_history" in history[0] and history[1]["status"] == "failed"
    assert "does not exist" in history[1]["error"] and history[1]["phase"] == phase
    assert conn.rollbacks == 1 and conn.commits == 1
