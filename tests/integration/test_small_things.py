"""Small things that bite: not-migrated databases, PostgreSQL down, usage errors, help texts."""

from __future__ import annotations

import pytest
import yaml

from etl.tools.demo import build_demo_source
from etl.migrate import migrate
from tests.integration.test_trust import etl

pytestmark = pytest.mark.integration

TABLES = {
    "definition": {"incremental_columns": ["DefNum"], "primary_incremental_column": "DefNum",
                   "primary_key": "DefNum", "extraction_strategy": "full_table"},
    "appointment": {"incremental_columns": ["AptNum", "DateTStamp"], "primary_incremental_column": "none",
                    "primary_key": "AptNum", "delete_detection": "reconcile"},
}


@pytest.fixture
def configured(settings):
    build_demo_source(settings.source_url, scale=0.002, tables=list(TABLES))
    settings.tables_path.write_text(yaml.safe_dump({"tables": TABLES}))
    return settings


def _one_line(result, *needles):
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and all(n in lines[0] for n in needles), result.stderr
    assert "Traceback" not in result.stderr and "1146" not in result.stderr


def test_not_migrated_or_missing_databases_say_run_etl_migrate(configured):
    # Neither the replica nor the analytics database exists yet.
    for command in (["status"], ["init-tracking"], ["verify"], ["reconcile"], ["run"], ["copy"]):
        result = etl(configured, *command)
        assert result.returncode == 1, (command, result.stderr)
        _one_line(result, "does not exist yet", "run `etl migrate`")
    # The databases exist, the tracking tables do not.
    migrate(configured)
    from tests.conftest import mysql_conn
    conn = mysql_conn(configured.replica_url)
    with conn.cursor() as cur:
        cur.execute("DROP TABLE etl_copy_status, etl_copy_column_status, etl_run_history, alembic_version")
    conn.close()
    for command in (["status"], ["init-tracking"], ["verify"], ["reconcile"]):
        result = etl(configured, *command)
        assert result.returncode == 1, (command, result.stderr)
        _one_line(result, "revision none", "run `etl migrate`")


def test_status_and_copy_work_while_postgresql_is_down(configured):
    migrate(configured)
    down = configured.analytics_url.set(port=1)
    env = {"ETL_ANALYTICS_URL": down.render_as_string(hide_password=False)}
    copied = etl(configured, "copy", **env)
    assert copied.returncode == 0, copied.stderr
    status = etl(configured, "status", **env)
    assert status.returncode == 0, status.stderr
    assert "load and transform not shown: cannot connect" in status.stdout
    assert any(line.startswith("definition") and "copy" in line and "success" in line
               for line in status.stdout.splitlines())
    assert etl(configured, "load", **env).returncode == 1


def test_usage_errors_and_help(configured):
    migrate(configured)
    for jobs in ("0", "-1", "x"):
        result = etl(configured, "run", "--jobs", jobs)
        assert result.returncode == 2 and "--jobs" in result.stderr, result.stderr
    render = etl(configured, "render", "copy", "appointment", "--strategy", "primary")
    assert render.returncode == 2
    _one_line(render, "--strategy primary needs a primary incremental column")
    for command in ("copy", "status", "history", "reconcile", "demo-data", "render"):
        text = etl(configured, command, "--help").stdout
        description = text.split("\n\n")[1]  # after the usage: the one-line description
        assert not description.startswith(("positional", "options")), (command, text)
    dbt_help = etl(configured, "dbt", "--", "--help")
    assert dbt_help.returncode == 0 and "Usage:" in dbt_help.stdout, dbt_help.stderr
    assert "\x1b[" not in dbt_help.stdout  # no colour codes off a terminal
