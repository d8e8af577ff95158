"""Helpers for engine tests: a hand-made source table, a tables.yml, and one call per phase run."""

from __future__ import annotations

import textwrap
from dataclasses import replace

import yaml

from etl.config import load_config
from etl.migrate import migrate
from etl.runner import run_phases
from tests.conftest import mysql_conn, pg_conn


class Pipeline:
    """A source + replica + analytics trio for one test, migrated, with a tables.yml it writes."""

    def __init__(self, settings, tables: dict):
        self.settings = settings
        self.tables = tables
        settings.tables_path.write_text(yaml.safe_dump({"tables": tables}, sort_keys=False))
        migrate(settings)

    def source(self, sql: str, params=None):
        conn = mysql_conn(self.settings.source_url)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION', time_zone = '+00:00'")
                for statement in [s for s in textwrap.dedent(sql).split(";\n") if s.strip()]:
                    cur.execute(statement, params)
                return cur.fetchall()
        finally:
            conn.close()

    def replica(self, sql: str, params=None):
        conn = mysql_conn(self.settings.replica_url)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION time_zone = '+00:00'")
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            conn.close()

    def raw(self, sql: str, params=None):
        conn = pg_conn(self.settings.analytics_url)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def run(self, phases=("copy", "load"), tables=None, *, full=False, settings=None):
        settings = settings or self.settings
        results = run_phases(settings, load_config(settings.tables_path), list(phases), tables, full=full)
        failed = [r for r in results if not r.ok]
        assert not failed, failed
        return {(r.phase, r.table): r for r in results}

    def separate_servers(self):
        """The same databases, but with the replica reached as `localhost`: copy takes the streaming path."""
        return replace(self.settings, replica_url=self.settings.replica_url.set(host="localhost"))

    def status(self, phase: str, table: str):
        if phase == "copy":
            rows = self.replica("SELECT copy_status, primary_column_name, last_primary_value, rows_copied "
                                "FROM etl_copy_status WHERE table_name = %s", (table,))
        else:
            rows = self.raw("SELECT load_status, primary_column_name, last_primary_value, rows_loaded "
                            "FROM raw.etl_load_status WHERE table_name = %s", (table,))
        return rows[0] if rows else None
