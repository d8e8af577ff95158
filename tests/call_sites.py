"""The runtime's own call sites of every statement that is not part of a recipe, driven against fake
connections (tests/fakes.py): reflection, the facts a phase gathers, locks, sessions, `etl migrate`'s
DDL, the tracking store, verify and reconcile, the transform phase's reads.

Each driver returns what the code made of the fake's answers; tests/unit/test_call_sites.py checks those,
and tests/unit/test_templates.py runs every driver to see which templates the code renders, with the
context it passes (so no template's context is typed by hand in a test).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable
from unittest import mock

from etl import tracking, versions
from etl.config import load_config
from etl.dialects import mysql, postgres
from etl.phases import copy, facts, transform
from etl.plan import RESCAN_LIMIT
from etl.render import Ident
from etl.verify import Side
from tests import snapshot_cases as sc
from tests.fakes import FakeConn

SETTINGS = sc.SETTINGS
PATIENT = sc.table_schema("patient")


def reflection() -> dict[str, Any]:
    source = FakeConn([
        [("patient", "MyISAM", "1234")],
        [("PatNum", "bigint", "bigint(20)", "NO", None, "auto_increment", None, None, 19, 0, None, None, "PRI"),
         ("LName", "varchar", "varchar(100)", "YES", "''", "", "utf8mb4", "utf8mb4_general_ci", None, None, 100,
          None, "")],
        [("PatNum",)],
        [("patient", "MyISAM", "1234")],
        [],  # a table that does not exist
    ])
    schema = mysql.reflect_table(source, "opendental", "patient")
    estimate = mysql.row_estimate(source, "opendental", "patient")
    missing = mysql.reflect_table(source, "opendental", "nosuch")
    raw = FakeConn([[("PatNum", "bigint"), ("LName", "character varying(100)")]])
    return {"schema": schema, "estimate": estimate, "missing": missing,
            "raw": postgres.reflect_columns(raw, "raw", "patient"), "conns": (source, raw)}


def json_reflection() -> dict[str, Any]:
    """MariaDB's JSON: a longtext with CHECK (json_valid(...)); the other longtext stays text."""
    source = FakeConn([
        [("doc", "InnoDB", "2")],
        [("Id", "bigint", "bigint(20)", "NO", None, "", None, None, 19, 0, None, None, "PRI"),
         ("Doc", "longtext", "longtext", "YES", None, "", "utf8mb4", "utf8mb4_bin", None, None, 4294967295, None, ""),
         ("Note", "longtext", "longtext", "YES", None, "", "utf8mb4", "utf8mb4_bin", None, None, 4294967295, None, "")],
        [("json_valid(`Doc`)",), ("`Id` > 0",)],
        [("Id",)],
    ])
    return {"schema": mysql.reflect_table(source, "opendental", "doc"), "conns": (source,)}


def horizon() -> dict[str, Any]:
    conn = FakeConn([
        [("2025-06-01 12:00:00.500000", "2025-06-01 14:00:00.500000", "2025-06-01 11:59:30.250000")],
        [("900000",)],
    ])
    columns = [PATIENT.column("PatNum"), PATIENT.column("DateTStamp")]
    return {"horizon": facts.capture_horizon(conn, columns, "opendental", "patient"), "conn": conn}


def resume_and_target() -> dict[str, Any]:
    plan = sc.plan_for(sc.demo_config()["patient"], "load", "primary")
    replica, raw = FakeConn([[(str(RESCAN_LIMIT + 1),)]]), FakeConn([[(4242,)]])
    resume = facts.resume_point(replica, "opendental_replication", plan, raw, postgres, {"schema": Ident("raw")})
    quiet = facts.resume_point(FakeConn([[("3",)]]), "opendental_replication", plan, raw, postgres,
                               {"schema": Ident("raw")})
    copy_plan = sc.plan_for(sc.demo_config()["patient"], "copy", "primary")
    mysql_replica = FakeConn([[(str(RESCAN_LIMIT + 1),)], [("4243",)]])
    copy_resume = facts.resume_point(mysql_replica, "opendental_replication", copy_plan, mysql_replica, mysql,
                                     {"database": Ident("opendental_replication")})
    states = {
        "new": facts.target_state(FakeConn(), mysql, {}, Ident("patient"), False),
        "mysql empty": facts.target_state(FakeConn([[("1",)]]), mysql, {}, Ident("patient"), True),
        "mysql populated": facts.target_state(FakeConn([[(0,)]]), mysql, {}, Ident("patient"), True),
        "postgres empty": facts.target_state(FakeConn([[(True,)]]), postgres, {"schema": Ident("raw")},
                                             Ident("patient"), True),
        "postgres populated": facts.target_state(FakeConn([[(False,)]]), postgres, {"schema": Ident("raw")},
                                                 Ident("patient"), True),
    }
    infile = (copy.infile_enabled(FakeConn([[("1",)]])), copy.infile_enabled(FakeConn([[("0",)]])))
    return {"plan": plan, "resume": resume, "quiet": quiet, "copy_plan": copy_plan, "copy_resume": copy_resume,
            "states": states, "infile": infile}


def locks_and_sessions() -> dict[str, Any]:
    got, busy = FakeConn([[(1,)]]), FakeConn([[(0,)]])
    pg = FakeConn([[("",)], [("",)]])
    session = FakeConn()
    mysql.run(session, "read_committed")
    mysql.run(session, "start_snapshot")
    return {"mysql": (mysql.acquire_lock(got, "etl:db:copy:patient", 5), mysql.acquire_lock(busy, "x", 5)),
            "postgres": postgres.acquire_lock(pg, "etl:load:patient", 0.5), "pg": pg, "session": session,
            "got": got}


def connections_and_ddl() -> dict[str, Any]:
    """Connecting (session setup), etl migrate's CREATE DATABASE / SCHEMA, the fast revision check."""
    made: dict[str, Any] = {}

    def fake_pymysql(**kwargs: Any) -> FakeConn:
        made["mysql"] = kwargs
        return FakeConn([[("0004_widen_rows",)]])

    created = {}
    with mock.patch("pymysql.connect", fake_pymysql):
        with mock.patch.object(mysql, "connect", lambda *a, **k: FakeConn(rowcount=1)):
            created["mysql"] = mysql.create_database(SETTINGS.replica_url, Ident("opendental_replication"),
                                                     role="replica")
        created["revision"] = versions.current(SETTINGS, "replica")
    with mock.patch.object(postgres, "connect", lambda *a, **k: FakeConn([[("0005_transform_load_id",)]])):
        created["postgres"] = postgres.create_database(SETTINGS.analytics_url, Ident("opendental_analytics"),
                                                       role="analytics")
        created["pg revision"] = versions.current(SETTINGS, "analytics")
    schema = FakeConn()
    postgres.create_schema(schema, "raw")
    return {"init_command": made["mysql"]["init_command"], "created": created, "schema": schema}


def tracking_stores() -> dict[str, Any]:
    """Every read and write of the tracking tables, both databases."""
    out: dict[str, Any] = {}
    for phase, side in (("copy", "replica"), ("load", "analytics")):
        store = tracking.store(SETTINGS, side)
        table = sc.demo_config()["appointment"]
        plan = sc.plan_for(table, phase, "fallback")
        conn = FakeConn([[("success", None, None)], [("AptNum", "600")]])
        out[f"{phase} state"] = store.read_state(conn, phase, "appointment")
        outcome = tracking.Outcome(plan=plan, run_id="run-1", started_at=dt.datetime(2025, 6, 1), history_id=7)
        writes = FakeConn()
        store.writer(plan, final=False).write(writes, outcome, status="running")
        store.writer(plan, final=True).write(writes, outcome)
        store.write_failure(writes, outcome, "RuntimeError: boom " + "x" * 5000)
        out[f"{phase} writes"] = writes
        init = FakeConn(rowcount=1)
        out[f"{phase} init"] = store.init_rows(init, phase, [table, sc.demo_config()["patient"]])
        out[f"{phase} all"] = store.all_rows(FakeConn([[("appointment", "success", None, None, 3, None)]]), phase)
        select, upsert = store.feed_statements(phase)
        feed = FakeConn([[("deletedobject.DeletedObjectNum", "41"), ("AptNum", "600")]])
        out[f"{phase} feed"] = tracking.read_feed(feed, select, "appointment")
        tracking.save_feed(feed, upsert, "appointment", 42)
        out[f"{phase} feed conn"] = feed
        history = FakeConn([[(99,)]])
        store.write_history(history, tracking.History(run_id="r", phase="reconcile", table="patient",
                                                      started_at=dt.datetime(2025, 6, 1), status="success"))
        out[f"{phase} history"] = history
        unplanned = FakeConn([[], [(100,)]])  # the status mark, then the next history id (PostgreSQL)
        store.write_unplanned_failure(unplanned, phase, table, "run-2", dt.datetime(2025, 6, 2),
                                      "SchemaError: table 'appointment' does not exist in the source database")
        out[f"{phase} unplanned"] = unplanned
    store = tracking.store(SETTINGS, "analytics")
    out["transform init"] = store.init_rows(FakeConn(rowcount=0), "transform", [sc.demo_config()["patient"]])
    out["transform all"] = store.all_rows(FakeConn([[("patient", "skipped", "DateTStamp", None, 0, None)]]),
                                          "transform")
    transform_conn = FakeConn([[(15, 12, "2025-05-01 10:00:00", "DateTStamp", "success")],
                               [("success", "2025-05-02 00:00:00", "DateTStamp", 40, 15)]])
    out["transform state"] = store.transform_state(transform_conn, "patient")
    out["transform recorded"] = store.transform_recorded(transform_conn, "patient")
    store.mark_transform(transform_conn, "patient", status="failed", primary_column_name="DateTStamp",
                         last_primary_value=None, last_load_id=12)
    out["transform conn"] = transform_conn
    return out


def transform_window() -> dict[str, Any]:
    """The transform phase reads each table's window of loads when it starts."""
    store = tracking.store(SETTINGS, "analytics")
    conn = FakeConn([[(15, 12, "2025-05-01 10:00:00", "DateTStamp", "success")],
                     [("PatNum", "bigint")], [(True,)]])
    window = transform._read_window(conn, store, postgres, "raw", sc.demo_config()["patient"])
    never = transform._read_window(FakeConn([[(None, None, None, None, None)]]), store, postgres, "raw",
                                   sc.demo_config()["patient"])
    return {"window": window, "never": never, "conn": conn}


def verify_sides() -> dict[str, Any]:
    """verify's per-bucket checksums and reconcile's deletes, on both kinds of database."""
    out = {}
    for side in (Side("replica", FakeConn(rowcount=2), mysql, {"database": Ident("opendental_replication")},
                      Ident("patient")),
                 Side("raw", FakeConn(rowcount=2), postgres, {"schema": Ident("raw")}, Ident("patient"))):
        side.conn.script = [[("1", "9000", "8000")], [("0", "5", "123"), ("3", "1", "7")], [("10", "77")]]
        key, columns = Ident("PatNum"), PATIENT.columns
        out[side.name] = {
            "range": side.key_range(key), "buckets": side.buckets(key, columns, 1, 9001, 2048),
            "rows": side.rows(key, columns, 1, 2049), "deleted": side.delete(key, list(range(2500)), "raw"),
            "conn": side.conn,
        }
    return out


def staging_keys() -> dict[str, Any]:
    """verify's key comparison of a staging model with raw: raw's and the model's columns, the last run the
    transform took, then one row per kind of difference."""
    from etl import verify
    from etl.phases.transform import KeyedModel

    model = KeyedModel(name="stg_patient", schema="staging", relation="stg_patient", table="patient",
                       raw_key="PatNum", model_key="pat_num", applies_deletes=True)
    conn = FakeConn([[("PatNum", "bigint")], [("pat_num", "bigint")],
                     [("success", None, "DateTStamp", 10, 15)],
                     [("missing", 0, []), ("extra", 2, [7, 9])]])
    store = tracking.store(SETTINGS, "analytics")
    return {"result": verify._verify_model(conn, postgres, store, "raw", model), "conn": conn}


_COLUMNS = [  # information_schema.COLUMNS rows of discover_columns (TABLE_NAME first)
    ("patient", "PatNum", "bigint", "bigint(20)", "NO", None, "auto_increment", None, None, 19, 0, None),
    ("patient", "LName", "varchar", "varchar(100)", "YES", "''", "", "utf8mb4", "utf8mb4_general_ci", None, None, 100),
    ("patient", "DateTStamp", "timestamp", "timestamp", "NO", "current_timestamp()",
     "on update current_timestamp()", None, None, None, None, None),
    ("preference", "PrefNum", "bigint", "bigint(20)", "NO", None, "auto_increment", None, None, 19, 0, None),
    ("preference", "PrefName", "varchar", "varchar(255)", "NO", "''", "", "utf8mb4", "utf8mb4_general_ci", None,
     None, 255),
    ("preference", "ValueString", "text", "text", "NO", None, "", "utf8mb4", "utf8mb4_general_ci", None, None, 65535),
]


def discover_source() -> dict[str, Any]:
    """etl discover's reading of the source (information_schema, then OpenDental's preference table), and
    etl dbt-sources' reading of the live columns."""
    from etl import dbt_sources, discover

    conn = FakeConn([
        [("10.11.6-MariaDB",)],
        [("patient", "MyISAM", "35135", "412", "35136"), ("preference", "MyISAM", "950", "90", "951")],
        _COLUMNS,
        [("patient", "PatNum"), ("preference", "PrefNum")],
        [("24.2.15.0",)],
    ])
    source = discover.read_source_from(conn, "opendental")
    live = FakeConn([_COLUMNS])
    columns = dbt_sources.live_columns_from(live, "opendental", load_config(sc.TABLES_PATH))
    return {"source": source, "columns": columns, "conns": (conn, live)}


#: Every driver, for test_templates.
def history_and_status() -> dict[str, Any]:
    """`etl history` and `etl status` over both tracking databases (copy in the replica, the rest in raw)."""
    from etl import status

    started = dt.datetime(2025, 6, 1, 2, 15, 0, 123456)
    utc = dt.timezone.utc

    def replica_answers(sql: str):
        if "ROW_NUMBER()" in sql:
            return [("patient", "copy", "success", started, 4, None, 120),
                    ("patient", "copy", "failed", started + dt.timedelta(days=1), 0, "SchemaError: gone", 0)]
        if "FROM etl_run_history" in sql:
            return [(7, "copy", "patient", "primary", "success", "2025-05-31 00:00:00", "2025-06-01 00:00:00", 10, 4,
                     None, None, started, started + dt.timedelta(seconds=2.5))]
        if "etl_copy_status" in sql:
            return [("patient", "failed", "DateTStamp", "2025-06-01 00:00:00", 4, started)]
        if "FROM etl_copy_rejects" in sql:  # a raw-text connection: bytes
            return [(b"patient", b'["7"]', b"LName", 20971520, b"max_allowed_packet on the replica (16,777,216 bytes)")]
        return []

    def raw_answers(sql: str):
        if "ROW_NUMBER()" in sql:
            return [("patient", "load", "success", started, 4, None, 4)]
        if "etl_run_history" in sql:
            return [(9, "load", "patient", "primary", "success", None, None, 4, 4, None, None, started,
                     dt.datetime(2025, 6, 1, 4, 15, 3, tzinfo=dt.timezone(dt.timedelta(hours=2))))]
        if "etl_load_status" in sql:
            return [("patient", "success", "DateTStamp", "2025-06-01 00:00:00", 4, started.replace(tzinfo=utc))]
        return []

    conns = {"replica": FakeConn(replica_answers), "analytics": FakeConn(raw_answers)}
    config = load_config(sc.PROJECT_ROOT / "tables.yml")
    with mock.patch.object(status, "_connect", lambda settings, **_: conns):
        history = status.history(SETTINGS, table="patient", since="2025-05-01")
        everything = status.history(SETTINGS, phase="copy", limit=5)
        report = status.status_report(SETTINGS, config)
    return {"history": history, "everything": everything, "report": report, "conns": conns,
            "text": status.format_status(report), "history_text": status.format_history(history)}


def stop_cancels() -> dict[str, Any]:
    """A clean stop ends a long MySQL statement with KILL QUERY, sent on a connection of its own."""
    from types import SimpleNamespace

    killer = FakeConn()
    running = SimpleNamespace(host="db", port=3306, user="etl", password="pw", thread_id=lambda: 4242)
    with mock.patch("pymysql.connect", lambda **kw: killer):
        mysql.kill_query(running)
    watcher = FakeConn([[(1234,)], []])
    with mock.patch("pymysql.connect", lambda **kw: watcher):
        poll = mysql.StatementProgress(running)
        polled = [poll(), poll()]
        poll.close()
    return {"killer": killer, "watcher": watcher, "polled": polled}


def row_in_parts(replica_packet: int = 8 << 20) -> dict[str, Any]:
    """The row-by-row copy of a row longer than the source's max_allowed_packet (4 MiB) and a quarter of the
    replica's: its batch holds the long value back, the source gives it in parts, the replica takes the row
    with it empty, then the parts appended. `patient` with its second column made a longtext."""
    from dataclasses import replace

    from etl import executor
    from etl.phases.facts import POPULATED

    plan = sc.plan_for(sc.demo_config()["patient"], "copy", "primary")
    columns = list(plan.columns)
    at = [c.name for c in columns].index(plan.key[0]) + 1
    columns[at] = replace(columns[at], data_type="longtext", column_type="longtext")
    plan = replace(plan, columns=tuple(columns))
    recipe = copy.recipe(plan, copy.decide(plan, copy.Facts(False, POPULATED, local_infile=False)),
                         copy.Place(sc.SOURCE_DB, "opendental_replication"), tracking.for_phase(SETTINGS, "copy"))
    value = ("é" * 1000 + "ab\n\t" * 100) * 3000  # 6.5 MB of utf8mb4, cut on character boundaries
    data = value.encode()
    row = [None] * len(columns)
    row[at - 1], row[at] = "7", ""
    lead = tuple("7" if kind == "integer" else "2025-06-01 10:00:00" for kind in plan.lead_kinds)
    batches = [[lead + tuple(row) + ("1",)], []]

    def source_answer(sql: str):
        if "max_allowed_packet" in sql:
            return [("4194304",)]
        if "SUBSTRING" in sql:
            params = source.executed[-1][1]
            start = params["part_start"] - 1
            return [(value[start:start + params["part_length"]].encode(),)]
        if "LIMIT" in sql:
            return batches.pop(0) if batches else []
        return []

    source = FakeConn(source_answer)
    replica = FakeConn(lambda sql: [(str(replica_packet),)] if "max_allowed_packet" in sql else [])
    outcome = tracking.Outcome(plan=plan, run_id="r", started_at=dt.datetime(2025, 1, 1))
    executor.run(recipe, {"source": source, "replica": replica}, outcome)
    return {"source": source, "replica": replica, "data": data, "at": at, "outcome": outcome}


DRIVERS: tuple[Callable[[], dict[str, Any]], ...] = (
    reflection, json_reflection, horizon, resume_and_target, locks_and_sessions, connections_and_ddl, tracking_stores,
    transform_window, verify_sides, staging_keys, discover_source, history_and_status, stop_cancels, row_in_parts,
)

