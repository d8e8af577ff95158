"""clinics.yml (etl/clinics.py) without a database: parsing, one-line errors, a clinic's settings, the pools,
the dbt schema suffix, and the promise that the core never imports Airflow."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import jinja2
import pytest

from etl import PROJECT_ROOT
from etl.clinics import clinic_applied, clinic_environment, connection_url, load_clinics
from etl.errors import ConfigError
from etl.locks import lock_name

GOOD = """
    dbt_work_dir: state
    defaults:
      replica: {env: REPLICA_SERVER_URL}
      retries: 3
      settings: {ETL_LOCK_TIMEOUT: 30}
    source_servers:
      hosted: {pool_slots: 3}
    warehouses:
      main: {analytics: {airflow_connection: od_warehouse}, pool_slots: 6}
    clinics:
      north:
        source: {env: NORTH_SOURCE_URL}
        tables: tables/north.yml
      south:
        source: {airflow_connection: od_hosted}
        source_database: opendental_south
        source_server: hosted
        replica_database: rep_south
        raw_schema: raw_s
        dbt_schema_suffix: _s
        tables: /etc/etl/south.yml
        schedule: "@hourly"
        verify_schedule: null
        settings: {ETL_RETRIES: 0}
      east:
        source: {airflow_connection: od_hosted}
        source_database: opendental_east
        source_server: hosted
        tables: tables/east.yml
"""

ENV = {
    "NORTH_SOURCE_URL": "mysql+pymysql://etl:n0rth@od-north:3306/opendental",
    "REPLICA_SERVER_URL": "mysql+pymysql://root@127.0.0.1:3306",
    "AIRFLOW_CONN_OD_HOSTED": "mysql://etl:p%40ss@od-hosted:3307",
    "AIRFLOW_CONN_OD_WAREHOUSE": json.dumps({"conn_type": "postgres", "host": "wh", "port": 5433,
                                             "login": "etl", "password": "s3cret", "schema": "analytics"}),
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "clinics.yml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_clinics(write(tmp_path, text))
    return str(caught.value).splitlines()


def test_a_good_file_becomes_frozen_clinics_with_defaults_and_derived_names(tmp_path):
    config = load_clinics(write(tmp_path, GOOD))
    north, south, east = (config.clinics[n] for n in ("north", "south", "east"))
    assert north.replica_database == "opendental_replication_north" and north.raw_schema == "raw_north"
    assert north.dbt_schema_suffix == "_north" and north.tables == tmp_path / "tables" / "north.yml"
    assert north.source_server.name == "north" and north.source_server.pool_slots == 2   # gentle by default
    assert north.warehouse.name == "main"                                                # the only warehouse
    assert north.retries == 3 and north.schedule == "0 2 * * *" and north.verify_schedule == "0 6 * * 0"
    assert dict(north.settings) == {"ETL_LOCK_TIMEOUT": "30"}
    assert dict(south.settings) == {"ETL_LOCK_TIMEOUT": "30", "ETL_RETRIES": "0"}        # merged key by key
    assert south.tables == Path("/etc/etl/south.yml") and south.verify_schedule is None
    assert south.schedule == "@hourly" and south.dag_id == "opendental_south"
    assert south.verify_dag_id == "opendental_south_verify"
    assert south.source_server is east.source_server
    assert config.dbt_work_dir == tmp_path / "state"
    with pytest.raises(Exception):
        north.raw_schema = "x"  # frozen


def test_pools_one_per_source_server_and_per_warehouse(tmp_path):
    pools = load_clinics(write(tmp_path, GOOD)).pools()
    assert {name: p["slots"] for name, p in pools.items()} == {
        "etl_source_hosted": 3, "etl_source_north": 2, "etl_warehouse_main": 6}
    assert all(set(p) == {"slots", "description", "include_deferred"} for p in pools.values())


def test_a_clinic_becomes_exactly_the_settings_a_single_clinic_user_exports(tmp_path):
    config = load_clinics(write(tmp_path, GOOD))
    north = clinic_environment(config, "north", ENV, cwd=tmp_path)
    assert north["ETL_SOURCE_URL"] == "mysql+pymysql://etl:n0rth@od-north:3306/opendental"
    assert north["ETL_REPLICA_URL"] == "mysql+pymysql://root@127.0.0.1:3306/opendental_replication_north"
    assert north["ETL_ANALYTICS_URL"] == "postgresql+psycopg2://etl:s3cret@wh:5433/analytics"
    assert north["ETL_RAW_SCHEMA"] == "raw_north" and north["ETL_DBT_SCHEMA_SUFFIX"] == "_north"
    assert north["ETL_TABLES"] == str(tmp_path / "tables" / "north.yml")
    assert north["DBT_TARGET_PATH"] == str(tmp_path / "state" / "north" / "target")
    assert north["DBT_LOG_PATH"] == str(tmp_path / "state" / "north" / "logs")
    assert north["ETL_LOCK_TIMEOUT"] == "30"
    south = clinic_environment(config, "south", ENV, cwd=tmp_path)
    # the URI form: percent-encoded password decoded, the clinic's database set
    assert south["ETL_SOURCE_URL"] == "mysql+pymysql://etl:p%40ss@od-hosted:3307/opendental_south"
    assert south["ETL_REPLICA_URL"].endswith("/rep_south") and south["ETL_RAW_SCHEMA"] == "raw_s"
    from sqlalchemy.engine import make_url
    assert make_url(south["ETL_SOURCE_URL"]).password == "p@ss"


@pytest.mark.parametrize("value, expected", [
    ('{"conn_type": "mysql", "host": "h", "login": "u", "password": "p", "schema": "db", "port": "3306"}',
     "mysql+pymysql://u:p@h:3306/db"),
    ('{"conn_type": "postgres", "host": "h", "schema": "a"}', "postgresql+psycopg2://h/a"),
    ("postgresql://u:p%2Fq@h:5432/a", "postgresql+psycopg2://u:p%2Fq@h:5432/a"),
    ("mysql://h/db", "mysql+pymysql://h/db"),
])
def test_airflow_connection_forms(value, expected):
    assert connection_url(value, "x").render_as_string(hide_password=False) == expected


def test_a_reference_missing_from_the_environment_names_the_variable(tmp_path):
    config = load_clinics(write(tmp_path, GOOD))
    with pytest.raises(ConfigError, match=r"clinic 'north': source: environment variable NORTH_SOURCE_URL is not set"):
        clinic_environment(config, "north", {k: v for k, v in ENV.items() if k != "NORTH_SOURCE_URL"}, cwd=tmp_path)
    with pytest.raises(ConfigError, match=r"clinic 'south': source: Airflow connection 'od_hosted' is not in this "
                                          r"environment: set AIRFLOW_CONN_OD_HOSTED"):
        clinic_environment(config, "south", {k: v for k, v in ENV.items() if "HOSTED" not in k}, cwd=tmp_path)
    with pytest.raises(ConfigError, match=r"connection type 'http' is not one of"):
        clinic_environment(config, "south", {**ENV, "AIRFLOW_CONN_OD_HOSTED": "http://h/x"}, cwd=tmp_path)
    with pytest.raises(ConfigError, match=r"clinic 'nowhere' is not configured \(clinics: north, south, east\)"):
        clinic_environment(config, "nowhere", ENV, cwd=tmp_path)


def test_clinic_applied_sets_the_settings_for_the_command_and_restores_them(tmp_path, monkeypatch):
    path = write(tmp_path, GOOD)
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ETL_RAW_SCHEMA", "raw")
    monkeypatch.delenv("DBT_TARGET_PATH", raising=False)
    with clinic_applied("north", path) as clinic:
        assert clinic.name == "north" and os.environ["ETL_RAW_SCHEMA"] == "raw_north"
        assert os.environ["DBT_TARGET_PATH"].endswith("north/target")
    assert os.environ["ETL_RAW_SCHEMA"] == "raw" and "DBT_TARGET_PATH" not in os.environ


@pytest.mark.parametrize("text, expected", [
    ("clinics: {North: {source: {env: X}, tables: t.yml}}\nwarehouses: {w: {analytics: {env: A}}}\n"
     "defaults: {replica: {env: R}}",
     "clinics.yml: clinic 'North': the name must be lower case letters, digits and _"),
    ("clinics: {n: {source: 'mysql://etl:hunter2@h/db', tables: t.yml, replica: {env: R}}}\n"
     "warehouses: {w: {analytics: {env: A}}}",
     "clinics.yml: clinic 'n': source: expected {env: VARIABLE} or {airflow_connection: CONN_ID} (never a URL or "
     "password here), got a text"),
    ("clinics: {n: {source: {url: 'mysql://etl:hunter2@h/db'}, tables: t.yml, replica: {env: R}}}\n"
     "warehouses: {w: {analytics: {env: A}}}",
     "clinics.yml: clinic 'n': source: expected {env: VARIABLE} or {airflow_connection: CONN_ID} (never a URL or "
     "password here), got {'url': 'mysql://etl:***@h/db'}"),
    ("clinics: {n: {source: {env: X}, tables: t.yml, replica: {env: R}, warehouse: big}}\n"
     "warehouses: {w: {analytics: {env: A}}}",
     "clinics.yml: clinic 'n': warehouse: 'big' is not declared under warehouses (declared: w)"),
    ("clinics: {n: {source: {env: X}, tables: t.yml, replica: {env: R}, source_server: s9}}\n"
     "warehouses: {w: {analytics: {env: A}}}",
     "clinics.yml: clinic 'n': source_server: 's9' is not declared under source_servers (declared: none)"),
    ("clinics: {n: {source: {env: X}, tables: t.yml, replica: {env: R}, raw_schema: 'raw-n'}}\n"
     "warehouses: {w: {analytics: {env: A}}}",
     "clinics.yml: clinic 'n': raw_schema: 'raw-n' is not a plain identifier (letters, digits and _, up to 64)"),
    ("clinics: {n: {source: {env: X}, tables: t.yml, replica: {env: R}, settings: {ETL_RAW_SCHEMA: x}}}\n"
     "warehouses: {w: {analytics: {env: A}}}",
     "clinics.yml: clinic 'n': settings: ETL_RAW_SCHEMA is set by the clinic itself"),
    ("clinics: {n: {source: {env: X}, tables: t.yml, replica: {env: R}, settings: {PATH: x}}}\n"
     "warehouses: {w: {analytics: {env: A}}}",
     "clinics.yml: clinic 'n': settings: 'PATH' is not an ETL_* setting"),
    ("clinics: {n: {source: {env: X}, tables: t.yml, replica: {env: R}, retries: -1}}\n"
     "warehouses: {w: {analytics: {env: A}}}",
     "clinics.yml: clinic 'n': retries: expected a whole number >= 0, got -1"),
    ("clinics: {n: {source: {env: X}, tables: t.yml, replica: {env: R}, sourse: {env: Y}}}\n"
     "warehouses: {w: {analytics: {env: A}}}",
     "clinics.yml: clinic 'n': unknown key 'sourse'; expected one of source, "),
    ("clinics: {n: {source: {env: X}, replica: {env: R}}}\nwarehouses: {w: {analytics: {env: A}}}",
     "clinics.yml: clinic 'n': tables: expected the path of the clinic's tables.yml, got None"),
    ("clinics: {n: {source: {env: X}, tables: t.yml, replica: {env: R}}}\n"
     "warehouses: {w: {analytics: {env: A}, pool_slots: 0}}",
     "clinics.yml: warehouses: 'w': pool_slots: expected a positive integer, got 0"),
    ("clinics: {n: {source: {env: X}, tables: t.yml, replica: {env: R}}}\n"
     "warehouses: {w: {analytics: {env: A}}}\nclinic: {}",
     "clinics.yml: unknown top-level key(s) clinic; expected clinics, defaults"),
    ("clinics:\n  n: {source: {env: X}, tables: t.yml, replica: {env: R}}\n  n: {}\n"
     "warehouses: {w: {analytics: {env: A}}}",
     "clinics.yml:3:3: malformed YAML: key 'n' appears twice in one mapping"),
    ("tables: {}", "clinics.yml: expected a top-level 'clinics:' mapping of clinic name to settings"),
])
def test_each_problem_is_one_line_naming_the_file_clinic_and_key(tmp_path, text, expected):
    problems = errors_of(tmp_path, text)
    assert any(line.replace(str(tmp_path) + "/", "").startswith(expected) for line in problems), problems
    assert not any("hunter2" in line for line in problems)


def test_two_clinics_never_share_a_replica_database_raw_schema_or_model_schemas(tmp_path):
    problems = errors_of(tmp_path, """
        defaults: {replica: {env: R}}
        warehouses: {w: {analytics: {env: A}}}
        clinics:
          a: {source: {env: X}, tables: a.yml, replica_database: shared, raw_schema: raw_shared, dbt_schema_suffix: ''}
          b: {source: {env: Y}, tables: b.yml, replica_database: shared, raw_schema: raw_shared, dbt_schema_suffix: ''}
          c: {source: {env: Z}, tables: c.yml, replica: {env: OTHER_SERVER}, replica_database: shared}
    """)
    text = [line.split(": ", 1)[1] for line in problems]
    assert text == [
        "clinic 'b': replica_database: 'shared' on $R is also clinic 'a''s: two clinics never share tracking, "
        "watermarks or locks",
        "clinic 'b': raw_schema: 'raw_shared' in warehouse 'w' is also clinic 'a''s: two clinics never share "
        "tracking, watermarks or locks",
        "clinic 'b': dbt_schema_suffix: '' in warehouse 'w' is also clinic 'a''s: two clinics never share "
        "tracking, watermarks or locks",
    ]  # c's replica is on another server: the same database name there is its own


def test_every_problem_of_the_file_is_reported_at_once(tmp_path):
    problems = errors_of(tmp_path, """
        warehouses: {w: {analytics: {env: A}}}
        clinics:
          a: {source: {env: X}, tables: a.yml, replica: {env: R}, retries: x}
          b: {source: 7, tables: b.yml, replica: {env: R}}
    """)
    assert len(problems) == 2 and "clinic 'a': retries" in problems[0] and "clinic 'b': source" in problems[1]


def test_postgres_locks_are_named_with_the_raw_schema():
    # one analytics database, two clinics: their load locks of the same table are two locks
    assert lock_name("load", "patient", "raw_north") != lock_name("load", "patient", "raw_south")
    assert lock_name("load", "patient", "raw_north") == "etl:raw_north:load:patient"


def _schema_macro(suffix: str | None):
    source = (PROJECT_ROOT / "dbt" / "macros" / "generate_schema_name.sql").read_text(encoding="utf-8")

    class CompileError(Exception):
        pass

    def raise_error(message):
        raise CompileError(message)

    env = {"ETL_DBT_SCHEMA_SUFFIX": suffix} if suffix is not None else {}
    module = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(source).make_module({
        "env_var": lambda name, default=None: env.get(name, default),
        "modules": SimpleNamespace(re=re), "target": SimpleNamespace(schema="analytics"),
        "exceptions": SimpleNamespace(raise_compiler_error=raise_error),
    })
    return lambda custom: str(module.generate_schema_name(custom, None)).strip(), CompileError


def test_dbt_model_schemas_carry_the_clinic_suffix():
    plain, _ = _schema_macro(None)
    assert plain("staging") == "staging" and plain(None) == "analytics"
    clinic, _ = _schema_macro("_north")
    assert clinic("staging") == "staging_north" and clinic(" marts ") == "marts_north"
    assert clinic(None) == "analytics_north"
    bad, error = _schema_macro("_x; drop")
    with pytest.raises(error, match="ETL_DBT_SCHEMA_SUFFIX: expected letters, digits and _"):
        bad("staging")


def test_the_core_never_imports_airflow():
    """Every module of the package but etl.airflow, and the CLI's parser, load without Airflow."""
    script = textwrap.dedent("""
        import importlib, pkgutil, sys, etl
        for module in pkgutil.walk_packages(etl.__path__, "etl."):
            if not module.name.startswith(("etl.airflow", "etl.__main__")):
                importlib.import_module(module.name)
        import etl.cli
        etl.cli.build_parser().parse_args(["--clinic", "x", "status"])
        print(sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow.")))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_bad_clinics_yml_exits_2_with_one_line_and_nothing_else(tmp_path):
    path = write(tmp_path, "clinics: {n: {source: {env: X}, tables: t.yml, replica: {env: R}}}\n"
                           "warehouses: {w: {analytics: {env: A}, pool_slots: many}}")
    env = {**os.environ, "ETL_CLINICS": str(path)}
    for argv in (["clinics"], ["--clinic", "n", "status"]):
        result = subprocess.run([sys.executable, "-m", "etl", *argv], capture_output=True, text=True, env=env,
                                timeout=60, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"error: {path}: warehouses: 'w': pool_slots: expected a positive integer, got 'many'"]
        assert result.stdout == ""


def test_etl_clinics_lists_where_settings_come_from_and_prints_the_pools(tmp_path):
    path = write(tmp_path, GOOD)
    env = {**os.environ, "ETL_CLINICS": str(path)}
    listed = subprocess.run([sys.executable, "-m", "etl", "clinics", "--json"], capture_output=True, text=True,
                            env=env, timeout=60, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {r["clinic"]: r for r in json.loads(listed.stdout)}
    assert rows["south"]["source"] == "Airflow connection od_hosted (database opendental_south)"
    assert rows["north"]["source"] == "$NORTH_SOURCE_URL" and rows["north"]["source_pool"] == "etl_source_north"
    pools = subprocess.run([sys.executable, "-m", "etl", "clinics", "--airflow-pools"], capture_output=True,
                           text=True, env=env, timeout=60, cwd=tmp_path)
    assert json.loads(pools.stdout) == load_clinics(path).pools()


def test_every_subcommand_keeps_the_global_clinic():
    """A subcommand's own option must not share the dest of the global --clinic: argparse would reset it to
    the subcommand's default and the command would run on the default settings (demo-data once rebuilt the
    default `opendental` database instead of the clinic's)."""
    import etl.cli
    parser = etl.cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, sub in commands.items():
        required = [a for a in sub._actions if a.required]
        assert not any(a.option_strings for a in required), f"{name}: give this test its required option"
        argv = ["--clinic", "north", name] + [next(iter(a.choices)) if a.choices else "x" for a in required]
        assert parser.parse_args(argv).clinic == "north", name
