"""Two demo clinics run end to end from their Airflow DAGs, on real Airflow with a SQLite metadata database in
a temporary AIRFLOW_HOME (never ~/airflow), and the machine's MariaDB and PostgreSQL.

Clinic a: source named by an environment variable, replica on the same server (server-side copy), a table
with reconcile delete detection. Clinic b: source named by an Airflow connection kept in Airflow's metadata
database, replica reached as another server (streamed copy, committed block by block), OpenDental's
deletion log (`deletedobject`) first. Both load into one analytics database, schemas raw_a and raw_b.

1. The first runs copy, load and transform everything, except clinic a's appointment, whose copy cannot get
   its lock (another run holds it): it fails both attempts, its load and delete detection don't run, the
   other tables and the transform do, the run is failed. Each raw schema equals its source row by row.
2. Then, with changes at both sources: clinic b's procedurelog copy is killed (SIGKILL) after its third
   committed block and Airflow's retry resumes from the committed watermark (it reads fewer rows than
   changed) and converges; clinic a's appointment, retried by this later run, converges; deletions arrive
   through reconcile (a) and OpenDental's log (b); both verify DAGs find no drift.

Airflow runs in processes of its own (tests/airflow_driver.py): dag.test() executes the tasks in that
process, and each task runs its `etl --clinic` command as a child process (the SIGKILL ends only that).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

from etl import PROJECT_ROOT
from etl.locks import lock_name
from tests.airflow_driver import MARK
from tests.conftest import MYSQL_URL, PG_URL, mysql_conn, pg_conn

pytestmark = [
    pytest.mark.integration,
    pytest.mark.airflow,
    pytest.mark.skipif(importlib.util.find_spec("airflow") is None,
                       reason="the airflow extra is not installed (make install-airflow)"),
]

SCALE = "0.01"
CHANGED = 1000          # procedurelog rows of clinic b changed before the second run
PROC_BATCH = 200        # ... copied in blocks of 200 rows: the third committed block is the crash point
DELETED_OBJECT_TYPE = 7  # the ObjectType this test logs clinic b's patient deletions under

TABLES_A = {
    "definition": {"incremental_columns": ["DefNum"], "primary_incremental_column": "DefNum",
                   "primary_key": "DefNum", "extraction_strategy": "full_table"},
    "patient": {"incremental_columns": ["PatNum", "DateTStamp"], "primary_incremental_column": "DateTStamp",
                "primary_key": "PatNum", "delete_detection": "reconcile"},
    "appointment": {"incremental_columns": ["AptNum", "DateTStamp", "AptDateTime"],
                    "primary_incremental_column": "none", "primary_key": "AptNum"},
}
TABLES_B = {
    "deletedobject": {"incremental_columns": ["DeletedObjectNum"], "primary_incremental_column": "DeletedObjectNum",
                      "primary_key": "DeletedObjectNum"},
    "patient": {"incremental_columns": ["PatNum", "DateTStamp"], "primary_incremental_column": "DateTStamp",
                "primary_key": "PatNum", "delete_detection": "deletedobject",
                "deleted_object_type": DELETED_OBJECT_TYPE},
    "procedurelog": {"incremental_columns": ["ProcNum", "DateTStamp"], "primary_incremental_column": "DateTStamp",
                     "primary_key": "ProcNum", "batch_size": PROC_BATCH},
}
#: per table: the key and the columns compared row by row (etl verify compares every column)
COMPARED = {"definition": ("DefNum", "ItemName"), "patient": ("PatNum", "LName", "FName", "DateTStamp"),
            "appointment": ("AptNum", "DateTStamp", "AptDateTime"), "procedurelog": ("ProcNum", "ProcFee", "DateTStamp"),
            "deletedobject": ("DeletedObjectNum", "ObjectNum", "ObjectType")}


class Deployment:
    """Two clinics, their databases, a clinics.yml, and an Airflow home with the example DAG file."""

    def __init__(self, tmp_path: Path, names: dict[str, str]):
        self.tmp, self.names = tmp_path, names
        my, pg = make_url(MYSQL_URL), make_url(PG_URL)
        self.source_url = {"a": my.set(database=names["src_a"]), "b": my.set(database=names["src_b"])}
        self.analytics_url = pg.set(database=names["analytics"])
        base = {k: v for k, v in os.environ.items() if not k.startswith(("ETL_", "DBT_", "AIRFLOW"))}
        base.update({
            "ETL_CLINICS": str(tmp_path / "clinics.yml"),
            "AF_SOURCE_A": self.source_url["a"].render_as_string(hide_password=False),
            "AF_REPLICA_SAME_SERVER": my.set(database=None).render_as_string(hide_password=False),
            # the same server reached by another name: the ETL takes it for a separate server (streamed copy)
            "AF_REPLICA_OTHER_SERVER": my.set(host="localhost", database=None).render_as_string(hide_password=False),
            "AF_ANALYTICS": self.analytics_url.render_as_string(hide_password=False),
        })
        self.source_b_conn = json.dumps({"conn_type": "mysql", "host": my.host, "port": my.port or 3306,
                                         "login": my.username or "root", "password": my.password or "",
                                         "schema": names["src_b"]})
        # by hand: the connection in Airflow's environment form; inside Airflow it comes from its database
        self.hand_env = {**base, "AIRFLOW_CONN_AF_SOURCE_B": self.source_b_conn}
        self.airflow_env = {**base, "AIRFLOW_HOME": str(tmp_path / "home"),
                            "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),
                            "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
        (tmp_path / "dags").mkdir()
        shutil.copy(PROJECT_ROOT / "etl" / "airflow" / "example_dag.py", tmp_path / "dags" / "opendental_clinics.py")
        (tmp_path / "tables_a.yml").write_text(yaml.safe_dump({"tables": TABLES_A}, sort_keys=False))
        (tmp_path / "tables_b.yml").write_text(yaml.safe_dump({"tables": TABLES_B}, sort_keys=False))
        (tmp_path / "tables_c.yml").write_text("tables:\n  patient: {primary_key: PatNum, batch_size: many}\n")
        self.write_clinics()

    def write_clinics(self, settings_a: dict | None = None, settings_b: dict | None = None) -> None:
        clinics = {
            "dbt_work_dir": "dbt-state",
            "defaults": {"retries": 1, "retry_delay_minutes": 0},
            "warehouses": {"main": {"analytics": {"env": "AF_ANALYTICS"}, "pool_slots": 3}},
            "clinics": {
                "a": {"source": {"env": "AF_SOURCE_A"}, "replica": {"env": "AF_REPLICA_SAME_SERVER"},
                      "replica_database": self.names["rep_a"], "tables": "tables_a.yml",
                      "settings": {"ETL_RETRIES": 0, **(settings_a or {})}},
                "b": {"source": {"airflow_connection": "af_source_b"}, "replica": {"env": "AF_REPLICA_OTHER_SERVER"},
                      "replica_database": self.names["rep_b"], "tables": "tables_b.yml",
                      "settings": {"ETL_RETRIES": 0, **(settings_b or {})}},
                # a clinic whose tables.yml is wrong: its preflight fails at once, without a retry
                "c": {"source": {"env": "AF_SOURCE_A"}, "replica": {"env": "AF_REPLICA_SAME_SERVER"},
                      "replica_database": self.names["rep_c"], "tables": "tables_c.yml"},
            },
        }
        (self.tmp / "clinics.yml").write_text(yaml.safe_dump(clinics, sort_keys=False))

    def etl(self, *args: str) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "etl", *args], env=self.hand_env, capture_output=True,
                                text=True, timeout=300, cwd=self.tmp)
        assert result.returncode == 0, f"etl {' '.join(args)}: {result.stderr[-3000:]}"
        return result

    def driver(self, *args: str) -> dict:
        result = subprocess.run([sys.executable, "-m", "tests.airflow_driver", *args],
                                env=self.airflow_env, capture_output=True, text=True, timeout=900, cwd=PROJECT_ROOT)
        self.log = result.stdout + result.stderr
        lines = [line for line in result.stdout.splitlines() if line.startswith(MARK)]
        assert result.returncode == 0 and lines, self.log[-5000:]
        output = json.loads(lines[-1][len(MARK):])
        assert "error" not in output, output
        return output

    def run_dags(self, *dag_ids: str) -> dict:
        return self.driver("test", *dag_ids)

    def source(self, clinic: str, sql: str, params=None):
        conn = mysql_conn(self.source_url[clinic])
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION time_zone = '+00:00'")
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            conn.close()

    def assert_raw_equals_source(self, clinic: str, tables: dict) -> None:
        conn = pg_conn(self.analytics_url)
        try:
            for table in tables:
                columns = COMPARED[table]
                expected = [tuple(r) for r in self.source(
                    clinic, f"SELECT {', '.join(columns)} FROM {table} ORDER BY {columns[0]}")]
                with conn.cursor() as cur:
                    cur.execute("SET TIME ZONE 'UTC'")
                    quoted = ", ".join(f'"{c}"' for c in columns)
                    cur.execute(f'SELECT {quoted} FROM raw_{clinic}.{table} ORDER BY "{columns[0]}"')
                    loaded = [tuple(r) for r in cur.fetchall()]
                assert loaded == expected, f"raw_{clinic}.{table} differs from clinic {clinic}'s source: " \
                    f"{len(loaded)} vs {len(expected)} rows, first difference " \
                    f"{next(((l, e) for l, e in zip(loaded, expected) if l != e), None)}"
        finally:
            conn.close()


def tasks_of(run: dict) -> dict[tuple[str, str | None], dict]:
    """(task_id, table) -> task instance; a mapped task's table is the preflight's list at its map index
    (a task that never ran has no rendered label)."""
    preflight = next(t for t in run["tasks"] if t["task_id"] == "preflight")
    tables = [spec["table"] for spec in preflight["xcom"] or []]
    found = {}
    for t in run["tasks"]:
        table = tables[t["map_index"]] if t["map_index"] >= 0 else None
        # the UI label of a table task is its table (the map index, for one that never started)
        assert t["label"] in (None, table, str(t["map_index"])), t
        found[(t["task_id"], table)] = t
    return found


@pytest.fixture
def deployment(tmp_path, mysql_database, pg_database):
    names = {"src_a": mysql_database("afsrca", create=False), "src_b": mysql_database("afsrcb", create=False),
             "rep_a": mysql_database("afrepa", create=False), "rep_b": mysql_database("afrepb", create=False),
             "rep_c": mysql_database("afrepc", create=False), "analytics": pg_database("afana", create=False)}
    d = Deployment(tmp_path, names)
    # by hand, as the README says: demo sources (clinic b: its own seed), deletion log, migrate
    d.etl("--clinic", "a", "demo-data", "--scale", SCALE, "--seed", "1")
    d.etl("--clinic", "b", "demo-data", "--scale", SCALE, "--seed", "2")
    d.source("b", "CREATE TABLE deletedobject (DeletedObjectNum bigint NOT NULL AUTO_INCREMENT, ObjectNum bigint "
                  "NOT NULL, ObjectType int NOT NULL, DateTStamp timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP, "
                  "PRIMARY KEY (DeletedObjectNum)) ENGINE=MyISAM")
    d.source("b", "INSERT INTO deletedobject (ObjectNum, ObjectType) VALUES (900001, 1), (900002, 2)")
    for clinic in ("a", "b"):
        d.etl("--clinic", clinic, "migrate")
    # Airflow, as the README says: metadata database, the clinic b connection, the pools from clinics.yml
    (tmp_path / "pools.json").write_text(d.etl("clinics", "--airflow-pools").stdout)
    d.pools = d.driver("setup", json.dumps([["db", "migrate"],
                                            ["connections", "add", "af_source_b", "--conn-json", d.source_b_conn],
                                            ["pools", "import", str(tmp_path / "pools.json")]]))["pools"]
    return d


def test_two_clinics_run_from_their_dags_and_failed_table_tasks_converge(deployment):
    d = deployment
    assert {k: d.pools.get(k) for k in ("etl_source_a", "etl_source_b", "etl_warehouse_main")} == \
        {"etl_source_a": 2, "etl_source_b": 2, "etl_warehouse_main": 3}

    # ---- 1. first runs: everything copied, loaded and transformed but clinic a's appointment
    d.write_clinics(settings_a={"ETL_LOCK_TIMEOUT": 1})
    holder = mysql_conn(make_url(MYSQL_URL))  # another run of clinic a's appointment copy holds its lock
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, 0)", (lock_name("copy", "appointment", d.names["rep_a"]),))
        runs = d.run_dags("opendental_a", "opendental_b", "opendental_c")
    finally:
        holder.close()
    c = tasks_of(runs["opendental_c"])
    assert runs["opendental_c"]["state"] == "failed"
    assert c[("preflight", None)]["state"] == "failed" and c[("preflight", None)]["try_number"] == 1
    assert c[("transform", None)]["state"] == "upstream_failed"
    assert f"error: {d.tmp}/tables_c.yml: table 'patient': batch_size: expected a positive integer, got 'many'" \
        in d.log
    assert "(configuration error: not retried)" in d.log
    for clinic, tables in (("a", TABLES_A), ("b", TABLES_B)):
        run = runs[f"opendental_{clinic}"]
        ti = tasks_of(run)
        done = [t for t in tables if t not in ("deletedobject", "appointment")]
        for table in done:
            for phase in ("copy", "load"):
                task = ti[(f"table.{phase}", table)]
                assert task["state"] == "success" and task["try_number"] == 1, task
                count = d.source(clinic, f"SELECT count(*) FROM {table}")[0][0]
                assert task["xcom"]["rows_read"] == count and task["xcom"]["strategy"] == "full", task
            detection = ti[("table.delete_detection", table)]
            assert detection["state"] == ("success" if tables[table].get("delete_detection") == "reconcile"
                                          else "skipped"), detection
        feed = "success" if "deletedobject" in tables else "skipped"
        assert ti[("copy_deletedobject", None)]["state"] == ti[("load_deletedobject", None)]["state"] == feed
        assert ti[("transform", None)]["state"] == "success"
        transformed = {r["table"]: r for r in ti[("transform", None)]["xcom"]}
        assert transformed["patient"]["ok"] and transformed["patient"]["rows_read"] == \
            d.source(clinic, "SELECT count(*) FROM patient")[0][0]
        d.assert_raw_equals_source(clinic, {t: tables[t] for t in tables if t != "appointment"})
    assert runs["opendental_b"]["state"] == "success"
    assert tasks_of(runs["opendental_b"])[("failures", None)]["state"] == "skipped"
    # clinic a: the appointment table failed, alone
    a = tasks_of(runs["opendental_a"])
    assert runs["opendental_a"]["state"] == "failed" and a[("failures", None)]["state"] == "failed"
    blocked = a[("table.copy", "appointment")]
    assert blocked["state"] == "failed" and blocked["try_number"] == 2 and blocked["xcom"] is None
    assert a[("table.load", "appointment")]["state"] == "upstream_failed"
    assert a[("table.delete_detection", "appointment")]["state"] == "upstream_failed"
    assert "copy appointment: skipped, another run holds its lock" in d.log  # the task log is the phase's log
    assert "running: etl --clinic b copy procedurelog --jobs 1 --json" in d.log
    assert re.search(r"INFO +copy procedurelog +full +read \d+, written \d+", d.log)

    # ---- 2. changes at both sources; b's procedurelog copy is killed after its third committed block
    stamp = "NOW() - INTERVAL 40 MINUTE"  # newer than every demo row, older than the open second
    d.source("b", f"UPDATE procedurelog SET ProcFee = ProcFee + 1, DateTStamp = {stamp} + INTERVAL ProcNum SECOND "
                  f"WHERE ProcNum <= {CHANGED}")
    gone_b = [r[0] for r in d.source("b", "SELECT PatNum FROM patient ORDER BY PatNum LIMIT 5")]
    d.source("b", "DELETE FROM patient WHERE PatNum IN %s", (gone_b,))
    for key in gone_b:
        d.source("b", "INSERT INTO deletedobject (ObjectNum, ObjectType) VALUES (%s, %s)", (key, DELETED_OBJECT_TYPE))
    d.source("a", f"UPDATE patient SET LName = CONCAT(LName, '*'), DateTStamp = {stamp} + INTERVAL PatNum SECOND "
                  "WHERE PatNum <= 100")
    gone_a = [r[0] for r in d.source("a", "SELECT PatNum FROM patient ORDER BY PatNum DESC LIMIT 5")]
    d.source("a", "DELETE FROM patient WHERE PatNum IN %s", (gone_a,))  # found by reconcile
    fired = d.tmp / "fault-fired"
    d.write_clinics(settings_b={"ETL_CRASH_AT": "copy.batch_committed:3", "ETL_FAULT_ONCE": str(fired)})
    # clinic a by hand, as an operator re-runs the tables that need it (params: tables, full)
    runs = d.run_dags('opendental_a={"tables": ["appointment", "patient"]}', "opendental_b", "opendental_a_verify",
                      "opendental_b_verify")

    b = tasks_of(runs["opendental_b"])
    assert runs["opendental_b"]["state"] == "success"
    assert fired.exists()  # the fault did fire ...
    killed = b[("table.copy", "procedurelog")]
    assert killed["state"] == "success" and killed["try_number"] == 2, killed  # ... and the retry converged
    resumed = killed["xcom"]
    # the retry started from the watermark the killed attempt committed (2 blocks of 200 and more)
    assert resumed["strategy"] == "primary" and 0 < resumed["rows_read"] <= CHANGED - 2 * PROC_BATCH, resumed
    assert "`etl --clinic b copy procedurelog --jobs 1 --json` failed (killed by signal 9)" in d.log
    assert all(t["try_number"] == 1 for k, t in b.items() if k != ("table.copy", "procedurelog") and t["try_number"])
    assert b[("load_deletedobject", None)]["xcom"]["rows_read"] >= len(gone_b)
    d.assert_raw_equals_source("b", TABLES_B)
    history = mysql_conn(make_url(MYSQL_URL).set(database=d.names["rep_b"]))
    with history.cursor() as cur:  # the run history agrees with what Airflow shows
        cur.execute("SELECT status, rows_read FROM etl_run_history WHERE table_name = 'procedurelog' AND "
                    "phase = 'copy' ORDER BY id DESC LIMIT 1")
        assert cur.fetchone() == ("success", resumed["rows_read"])
    history.close()

    a = tasks_of(runs["opendental_a"])
    assert runs["opendental_a"]["state"] == "success"
    assert {table for task, table in a if task == "table.copy"} == {"appointment", "patient"}
    retried = a[("table.copy", "appointment")]  # the table that failed last time, retried by this run
    assert retried["state"] == "success" and retried["xcom"]["strategy"] == "full"
    reconciled = a[("table.delete_detection", "patient")]["xcom"]
    assert reconciled["deleted_replica"] == reconciled["deleted_raw"] == 5, reconciled
    assert a[("table.load", "patient")]["xcom"]["rows_read"] >= 100
    d.assert_raw_equals_source("a", TABLES_A)

    for clinic in ("a", "b"):  # `etl verify` of each clinic: every column of every table, no drift
        run = runs[f"opendental_{clinic}_verify"]
        assert run["state"] == "success", run
        (verify,) = run["tasks"]
        assert verify["xcom"]["ok"] is True and verify["xcom"]["differing_rows"] == 0, verify
        assert set(verify["xcom"]["tables"]) == set(TABLES_A if clinic == "a" else TABLES_B)
    assert d.log.count("rows that differ: 0") == 2  # each verify task's log: the table `etl verify` prints

    # dbt built each clinic's models in schemas of its own, from its own raw schema
    conn = pg_conn(d.analytics_url)
    try:
        with conn.cursor() as cur:
            for clinic, edited in (("a", 100), ("b", 0)):  # a's 100 edited names, in a's models only
                cur.execute(f"SELECT count(*) FROM staging_{clinic}.stg_patient WHERE l_name LIKE '%*'")
                assert cur.fetchone()[0] == edited, clinic
            cur.execute('SELECT sum("ProcFee") FROM raw_b.procedurelog')
            raw_fees = cur.fetchone()[0]
            cur.execute("SELECT sum(proc_fee), to_regclass('staging_a.stg_procedurelog') FROM staging_b.stg_procedurelog")
            assert cur.fetchone() == (raw_fees, None)  # b's edited fees; a has no procedurelog
            cur.execute("SELECT count(*) FROM pg_namespace WHERE nspname IN ('raw', 'staging')")
            assert cur.fetchone()[0] == 0
    finally:
        conn.close()
