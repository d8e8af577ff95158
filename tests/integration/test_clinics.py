"""Two clinics in one analytics database through `etl --clinic NAME` (no Airflow needed): each its own replica
database, raw schema, dbt model schemas, dbt state folder, tracking and locks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy.engine import make_url

from etl.tools.demo import build_demo_source
from etl.locks import lock_name
from tests.conftest import MYSQL_URL, PG_URL, mysql_conn, pg_conn

pytestmark = pytest.mark.integration

TABLES = """
    tables:
      definition: {incremental_columns: [DefNum], primary_incremental_column: DefNum, primary_key: DefNum,
                   extraction_strategy: full_table}
      patient: {incremental_columns: [PatNum, DateTStamp], primary_incremental_column: DateTStamp,
                primary_key: PatNum, delete_detection: reconcile}
"""


@pytest.fixture
def clinics(tmp_path, mysql_database, pg_database):
    """Clinics a and b (demo sources of different seeds), replicas on one server, raw_a and raw_b in one
    analytics database; returns (environment for `etl`, names)."""
    names = {"src_a": mysql_database("etlsrca", create=False), "src_b": mysql_database("etlsrcb", create=False),
             "rep_a": mysql_database("etlrepa", create=False), "rep_b": mysql_database("etlrepb", create=False),
             "analytics": pg_database("etlana", create=False)}
    base_my, base_pg = make_url(MYSQL_URL), make_url(PG_URL)
    for clinic, seed in (("a", 1), ("b", 2)):
        build_demo_source(base_my.set(database=names[f"src_{clinic}"]), scale=0.01, seed=seed,
                          tables=["definition", "patient"])
    (tmp_path / "tables.yml").write_text(textwrap.dedent(TABLES), encoding="utf-8")
    (tmp_path / "clinics.yml").write_text(textwrap.dedent(f"""
        dbt_work_dir: dbt-state
        defaults: {{replica: {{env: T_REPLICA_URL}}, tables: tables.yml}}
        warehouses: {{main: {{analytics: {{env: T_ANALYTICS_URL}}}}}}
        clinics:
          a: {{source: {{env: T_SOURCE_A}}, replica_database: {names['rep_a']}}}
          b: {{source: {{env: T_SOURCE_B}}, replica_database: {names['rep_b']}}}
    """), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETL_", "DBT_"))}
    env.update({
        "ETL_CLINICS": str(tmp_path / "clinics.yml"), "ETL_RETRIES": "0",
        "T_REPLICA_URL": base_my.set(database=None).render_as_string(hide_password=False),
        "T_ANALYTICS_URL": base_pg.set(database=names["analytics"]).render_as_string(hide_password=False),
        "T_SOURCE_A": base_my.set(database=names["src_a"]).render_as_string(hide_password=False),
        "T_SOURCE_B": base_my.set(database=names["src_b"]).render_as_string(hide_password=False),
    })
    return env, names


def etl(env, *args, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "etl", *args], env={**env, **extra}, capture_output=True,
                          text=True, timeout=300)


def test_two_clinics_in_one_analytics_database_never_share_anything(clinics, tmp_path):
    env, names = clinics
    before = etl(env, "--clinic", "a", "preflight")  # not migrated yet: the replica database is missing
    assert before.returncode == 1 and names["rep_a"] in before.stderr, before.stderr
    for clinic in ("a", "b"):
        migrated = etl(env, "--clinic", clinic, "migrate")
        assert migrated.returncode == 0, migrated.stderr
        assert etl(env, "--clinic", clinic, "preflight").returncode == 0
        ran = etl(env, "--clinic", clinic, "run")
        assert ran.returncode == 0, ran.stdout + ran.stderr

    analytics = pg_conn(make_url(env["T_ANALYTICS_URL"]))
    try:
        with analytics.cursor() as cur:
            for clinic in ("a", "b"):
                source = mysql_conn(make_url(env[f"T_SOURCE_{clinic.upper()}"]))
                with source.cursor() as src:
                    src.execute("SELECT PatNum, LName, DateTStamp FROM patient ORDER BY PatNum")
                    expected = [tuple(r) for r in src.fetchall()]
                source.close()
                cur.execute(f'SELECT "PatNum", "LName", "DateTStamp" FROM raw_{clinic}.patient ORDER BY 1')
                assert [tuple(r) for r in cur.fetchall()] == expected, clinic
                cur.execute(f"SELECT count(*), max(l_name) FROM staging_{clinic}.stg_patient")
                count, name = cur.fetchone()
                assert count == len(expected) and name == max(r[1] for r in expected if r[1]), clinic
                cur.execute(f"SELECT table_name, load_status FROM raw_{clinic}.etl_load_status ORDER BY 1")
                assert cur.fetchall() == [("definition", "success"), ("patient", "success")]
            cur.execute("SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace WHERE nspname "
                        "IN ('raw', 'staging', 'analytics')")
            assert cur.fetchone()[0] is None  # nothing built into the single-clinic schemas
            digest = "SELECT md5(string_agg(pat_num || ':' || coalesce(l_name, ''), ',' ORDER BY pat_num)) FROM {}"
            cur.execute(f"{digest.format('staging_a.stg_patient')} UNION ALL {digest.format('staging_b.stg_patient')}")
            assert len({r[0] for r in cur.fetchall()}) == 2  # different seeds, different data
    finally:
        analytics.close()
    for clinic in ("a", "b"):  # dbt's parse state and logs per clinic
        assert (tmp_path / "dbt-state" / clinic / "target" / "manifest.json").is_file()
        assert (tmp_path / "dbt-state" / clinic / "logs").is_dir()
    replica = mysql_conn(make_url(env["T_REPLICA_URL"]).set(database=names["rep_b"]))
    with replica.cursor() as cur:
        cur.execute("SELECT table_name, copy_status FROM etl_copy_status ORDER BY 1")
        assert cur.fetchall() == (("definition", "success"), ("patient", "success"))
    replica.close()


def test_a_clinics_lock_never_blocks_another_clinic(clinics):
    env, _ = clinics
    for clinic in ("a", "b"):
        assert etl(env, "--clinic", clinic, "migrate").returncode == 0
    holder = pg_conn(make_url(env["T_ANALYTICS_URL"]))
    try:
        with holder.cursor() as cur:  # clinic a's load of patient is "running"
            cur.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (lock_name("load", "patient", "raw_a"),))
        for clinic in ("a", "b"):
            assert etl(env, "--clinic", clinic, "copy", "patient").returncode == 0
        other = etl(env, "--clinic", "b", "load", "patient", ETL_LOCK_TIMEOUT="1")
        assert other.returncode == 0, other.stderr
        same = etl(env, "--clinic", "a", "load", "patient", ETL_LOCK_TIMEOUT="1")
        assert same.returncode == 1
        assert "load patient: skipped, another run holds its lock (waited 1 s" in same.stderr
    finally:
        holder.close()
    assert etl(env, "--clinic", "a", "load", "patient").returncode == 0


def test_load_can_leave_delete_detection_to_a_separate_reconcile(clinics):
    """What the Airflow DAG does: load with --no-reconcile, then `etl reconcile` as a task of its own."""
    env, _ = clinics
    assert etl(env, "--clinic", "a", "migrate").returncode == 0
    assert etl(env, "--clinic", "a", "run").returncode == 0
    source = mysql_conn(make_url(env["T_SOURCE_A"]))
    with source.cursor() as cur:
        cur.execute("DELETE FROM patient ORDER BY PatNum DESC LIMIT 3")
    assert etl(env, "--clinic", "a", "copy", "patient").returncode == 0
    loaded = etl(env, "--clinic", "a", "load", "patient", "--no-reconcile", "--json")
    assert [(r["phase"], r["table"], r["ok"]) for r in json.loads(loaded.stdout)] == [("load", "patient", True)]
    reconciled = etl(env, "--clinic", "a", "reconcile", "patient", "--json")
    assert json.loads(reconciled.stdout) == {"patient": {"replica": 3, "raw": 3}}
    with source.cursor() as cur:
        cur.execute("DELETE FROM patient ORDER BY PatNum DESC LIMIT 2")
    source.close()
    assert etl(env, "--clinic", "a", "copy", "patient").returncode == 0
    loaded = etl(env, "--clinic", "a", "load", "patient", "--json")  # by default the load reconciles
    results = {r["phase"]: r for r in json.loads(loaded.stdout)}
    assert set(results) == {"load", "reconcile"} and results["reconcile"]["rows_written"] == 4  # 2 + 2
