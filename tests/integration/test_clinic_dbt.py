"""dbt from the live schema: `etl dbt-sources` lists the columns the source really has (an added column appears,
a dropped one goes) and gives every configured table without a hand-written model a generated staging model
that builds; and the whole fact sheet (93 tables) at a tiny scale: discover -> dbt-sources -> run -> verify.

Each test works on a copy of the shipped dbt project (ETL_DBT_PROJECT_DIR), never on dbt/ itself."""

from __future__ import annotations

import shutil

import pytest
import yaml

from etl import PROJECT_ROOT
from etl.config import load_config
from etl.dbt_sources import GENERATED_DIR, MODEL_HEADER, SOURCES_RELATIVE, snake_case
from etl.tools.demo import FILL_ORDER, build_demo_source, clinic_tables
from etl.migrate import migrate
from etl.verify import verify
from tests.conftest import mysql_conn, pg_conn
from tests.integration.test_trust import etl

pytestmark = pytest.mark.integration


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A private copy of the shipped dbt project, the one the commands under test write to and run."""
    target = tmp_path / "dbt"
    shutil.copytree(PROJECT_ROOT / "dbt", target,
                    ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", "generated"))
    monkeypatch.setenv("ETL_DBT_PROJECT_DIR", str(target))
    return target


def source_sql(settings, *statements: str) -> None:
    conn = mysql_conn(settings.source_url)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def raw(settings, sql: str, params=None):
    conn = pg_conn(settings.analytics_url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def ok(result) -> str:
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout


def source_keys(settings, table: str, key: str) -> list[int]:
    conn = mysql_conn(settings.source_url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT `{key}` FROM `{table}` ORDER BY 1")
            return [k for (k,) in cur.fetchall()]
    finally:
        conn.close()


def source_columns(project, table: str) -> list[str]:
    document = yaml.safe_load((project / SOURCES_RELATIVE).read_text(encoding="utf-8"))
    tables = {t["name"]: t for s in document["sources"] if s["name"] == "opendental" for t in s["tables"]}
    return [c["name"] for c in tables[table]["columns"]]


def test_sources_follow_the_live_columns_and_generated_models_build(settings, project):
    tables = ["patient", "definition", "zipcode", "insbluebook"]  # two hand-written models, two generated
    build_demo_source(settings.source_url, scale=0.002, tables=tables)
    migrate(settings)
    ok(etl(settings, "discover", "--no-diff"))
    out = ok(etl(settings, "dbt-sources"))
    assert "2 generated staging model(s)" in out
    generated = project / GENERATED_DIR
    assert sorted(p.name for p in generated.iterdir()) == ["_generated.yml", "stg_insbluebook.sql", "stg_zipcode.sql"]
    model = (generated / "stg_zipcode.sql").read_text(encoding="utf-8")
    assert model.startswith(MODEL_HEADER) and "unique_key='zip_code_num'" in model
    tests = yaml.safe_load((generated / "_generated.yml").read_text(encoding="utf-8"))["models"]
    assert {m["name"]: m["columns"][0]["data_tests"] for m in tests} == {
        "stg_zipcode": ["unique", "not_null"], "stg_insbluebook": ["unique", "not_null"]}
    assert source_columns(project, "zipcode") == [c.name for c in clinic_tables()["zipcode"].columns] + [
        "_etl_load_id", "_etl_loaded_at"]
    assert ok(etl(settings, "dbt-sources", "--check")).strip().endswith("are up to date")

    ok(etl(settings, "run"))
    for table in tables:
        key = snake_case(clinic_tables()[table].primary_key[0])
        count = raw(settings, f"SELECT count(*), count(DISTINCT {key}) FROM staging.stg_{table}")[0]
        assert count == raw(settings, f"SELECT count(*), count(*) FROM raw.{table}")[0], table
    statuses = dict(raw(settings, "SELECT table_name, transformation_status FROM raw.etl_transform_status"))
    assert statuses == {t: "success" for t in tables}

    # rows deleted at the source leave the generated models too, whichever delete detection discover chose
    config = load_config(settings.tables_path)
    detection = {t: (config.tables[t].delete_detection, config.tables[t].extraction_strategy) for t in tables}
    for table in ("zipcode", "insbluebook"):
        key = clinic_tables()[table].primary_key[0]
        assert len(source_keys(settings, table, key)) > 3, table
        source_sql(settings, f"DELETE FROM {table} ORDER BY {key} LIMIT 2")
    ok(etl(settings, "run"))
    for table in ("zipcode", "insbluebook"):
        key = clinic_tables()[table].primary_key[0]
        expected = source_keys(settings, table, key)
        assert [k for (k,) in raw(settings, f'SELECT "{key}" FROM raw.{table} ORDER BY 1')] == expected, detection
        assert [k for (k,) in raw(settings, f"SELECT {snake_case(key)} FROM staging.stg_{table} ORDER BY 1")] == \
            expected, detection
    report = verify(settings, config)
    assert report["ok"], report
    checked = {m["relation"] for r in report["tables"] for m in r["staging"] if m["status"] == "ok"}
    assert {"staging.stg_zipcode", "staging.stg_insbluebook"} <= checked

    # a column added at the source: dbt-sources --check notices, dbt-sources lists it, the next run carries it
    source_sql(settings, "ALTER TABLE zipcode ADD COLUMN Latitude double NOT NULL DEFAULT 45.5",
               "ALTER TABLE patient ADD COLUMN PronounPreferred tinyint(4) NOT NULL DEFAULT 0",
               "UPDATE zipcode SET Latitude = 44.9 WHERE ZipCodeNum = 3")
    stale = etl(settings, "dbt-sources", "--check")
    assert stale.returncode == 1 and "_sources.yml is stale" in stale.stderr
    ok(etl(settings, "dbt-sources"))
    assert source_columns(project, "zipcode")[-3:] == ["Latitude", "_etl_load_id", "_etl_loaded_at"]
    assert "PronounPreferred" in source_columns(project, "patient")
    ok(etl(settings, "discover", "--no-diff"))  # the config covers the new columns again
    ok(etl(settings, "run"))
    assert raw(settings, "SELECT latitude FROM staging.stg_zipcode WHERE zip_code_num = 3") == [(44.9,)]

    # and a dropped one goes from the sources (raw keeps it: drift is reported, never applied)
    source_sql(settings, "ALTER TABLE zipcode DROP COLUMN Latitude")
    ok(etl(settings, "dbt-sources"))
    assert "Latitude" not in source_columns(project, "zipcode")

    # a hand-written model takes over: the generated one is removed, nothing else is touched
    (project / "models" / "staging" / "stg_zipcode.sql").write_text(
        (generated / "stg_zipcode.sql").read_text(encoding="utf-8").split("\n", 1)[1], encoding="utf-8")
    (generated / "notes.md").write_text("mine\n", encoding="utf-8")
    out = ok(etl(settings, "dbt-sources"))
    assert "removed" in out and not (generated / "stg_zipcode.sql").exists() and (generated / "notes.md").exists()


def test_the_whole_fact_sheet_discovered_run_transformed_and_verified(settings, project):
    written = build_demo_source(settings.source_url, scale=0.0005, clinic=True, jobs=2)
    assert len(written) == 93
    migrate(settings)
    ok(etl(settings, "discover", "--no-diff"))
    config = load_config(settings.tables_path)
    assert len(config.tables) == 93
    out = ok(etl(settings, "dbt-sources"))
    assert f"{93 - len(FILL_ORDER)} generated staging model(s)" in out
    ok(etl(settings, "check-config"))
    ok(etl(settings, "run"))
    statuses = dict(raw(settings, "SELECT table_name, transformation_status FROM raw.etl_transform_status"))
    assert statuses == {name: "success" for name in config.tables}
    staged = {name: raw(settings, f"SELECT count(*) FROM staging.stg_{name}")[0][0] for name in config.tables}
    assert staged == {name: raw(settings, f"SELECT count(*) FROM raw.{name}")[0][0] for name in config.tables}
    report = verify(settings, config)
    assert report["ok"] and report["differing_rows"] == 0
    assert ok(etl(settings, "discover", "--check"))
