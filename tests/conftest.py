"""Shared fixtures. Integration tests get their own uniquely named databases, dropped afterwards."""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from pathlib import Path

import psycopg2
import pymysql
import pytest
from sqlalchemy.engine import make_url

from etl.settings import Settings

MYSQL_URL = os.environ.get("ETL_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/")
PG_URL = os.environ.get("ETL_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _mysql_admin():
    url = make_url(MYSQL_URL)
    return pymysql.connect(host=url.host, port=url.port or 3306, user=url.username or "root",
                           password=url.password or "", autocommit=True)


def _pg_admin():
    url = make_url(PG_URL)
    conn = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username or "postgres",
                            password=url.password or None, dbname=url.database or "postgres")
    conn.autocommit = True
    return conn


@pytest.fixture(autouse=True)
def _dbt_paths(request, monkeypatch):
    """Integration tests whose `etl run` reaches the transform phase: dbt writes its target/ and logs/ in the
    test's own folder (dbt reads these variables; subprocesses inherit them), never in the shared dbt/."""
    if request.node.get_closest_marker("integration") is None:
        return
    tmp_path = request.getfixturevalue("tmp_path")
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "dbt-target"))
    monkeypatch.setenv("DBT_LOG_PATH", str(tmp_path / "dbt-logs"))


@pytest.fixture
def mysql_database():
    """Factory: creates an empty MariaDB database with a unique name; all are dropped after the test."""
    created: list[str] = []
    admin = _mysql_admin()

    def make(prefix: str = "etltest", create: bool = True) -> str:
        name = unique_name(prefix)
        if create:
            with admin.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
        created.append(name)
        return name

    yield make
    with admin.cursor() as cur:
        for name in created:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    admin.close()


@pytest.fixture
def pg_database():
    """Factory: a unique PostgreSQL database name (created unless create=False); dropped afterwards."""
    created: list[str] = []
    admin = _pg_admin()

    def make(prefix: str = "etltest", create: bool = True) -> str:
        name = unique_name(prefix)
        if create:
            with admin.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return name

    yield make
    with admin.cursor() as cur:
        for name in created:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def settings(mysql_database, pg_database, tmp_path) -> Settings:
    """Settings whose source, replica and analytics databases are unique to this test.

    The source database exists (empty); replica and analytics do not yet: `etl migrate` creates them.
    """
    source = mysql_database("etlsrc")
    replica = mysql_database("etlrep", create=False)
    analytics = pg_database("etlana", create=False)
    base_my = make_url(MYSQL_URL)
    base_pg = make_url(PG_URL)
    return Settings(
        source_url=base_my.set(database=source),
        replica_url=base_my.set(database=replica),
        analytics_url=base_pg.set(database=analytics),
        raw_schema="raw",
        tables_path=tmp_path / "tables.yml",
    )


def mysql_conn(url):
    return pymysql.connect(host=url.host, port=url.port or 3306, user=url.username or "root",
                           password=url.password or "", database=url.database, autocommit=True)


def pg_conn(url):
    conn = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username or "postgres",
                            password=url.password or None, dbname=url.database)
    conn.autocommit = True
    return conn
