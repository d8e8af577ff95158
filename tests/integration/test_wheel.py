"""The built wheel works outside the checkout: templates, both migration lineages, the dbt project and the
demo catalog come from the package, found through importlib.resources."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from etl import PROJECT_ROOT
from tests.conftest import MYSQL_URL, PG_URL, unique_name

pytestmark = pytest.mark.integration

#: What a build reads: the package and the files setup.py maps into it.
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "etl", "sql_templates", "migrations_mysql",
                "migrations_postgres", "alembic.ini", "dbt")


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert result.returncode == 0, f"{cmd}: {result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture
def installed(tmp_path):
    """A wheel built from a copy of the sources, installed into a fresh venv in a temporary directory that
    sees this venv's site-packages for the dependencies (no index, no downloads of them)."""
    source = tmp_path / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "target", "logs", "dbt_packages", "*.egg-info")
    for name in BUILD_INPUTS:
        path = PROJECT_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)])
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    # Dependencies from this venv (a plain path: its .pth files, the editable checkout among them, are not read).
    (site / "_deps_from_test_venv.pth").write_text(sysconfig.get_path("purelib") + "\n")
    wheel = next(wheels.glob("opendental_etl-*.whl"))
    _run([str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(wheel)])
    work = tmp_path / "work"  # outside the checkout: nothing of it is reachable from here
    work.mkdir()
    shutil.copy2(PROJECT_ROOT / "tables.yml", work / "tables.yml")  # the user's configuration
    return venv / "bin" / "etl", work


def test_the_installed_wheel_migrates_builds_the_demo_runs_and_reports(installed, mysql_database, pg_database,
                                                                       tmp_path):
    etl, work = installed
    mysql_base, pg_base = MYSQL_URL.rstrip("/"), PG_URL.rsplit("/", 1)[0]
    source = mysql_database("etlwhsrc", create=False)
    replica = mysql_database("etlwhrep", create=False)
    analytics = pg_database("etlwhana", create=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETL_", "DBT_", "PYTHONPATH"))}
    env.update({"ETL_SOURCE_URL": f"{mysql_base}/{source}", "ETL_REPLICA_URL": f"{mysql_base}/{replica}",
                "ETL_ANALYTICS_URL": f"{pg_base}/{analytics}", "ETL_RAW_SCHEMA": unique_name("raw"),
                "XDG_CACHE_HOME": str(tmp_path / "cache")})

    def etl_(*args):
        return _run([str(etl), *args], cwd=work, env=env)

    assert etl_("--version").stdout.strip() == "etl 0.1.0"
    where = _run([str(etl.parent / "python"), "-c", "import etl.resources as r; print(r.DATA_ROOT, r.INSTALLED)"],
                 cwd=work, env=env).stdout
    assert str(PROJECT_ROOT) not in where and "site-packages" in where and where.strip().endswith("True")
    etl_("migrate")
    built = etl_("demo-data", "--scale", "0.002")
    assert source in built.stdout
    run = etl_("run")
    assert "0 failed" in run.stdout, run.stdout
    import json
    report = json.loads(etl_("status", "--json").stdout)
    assert len(report["tables"]) == 12
    assert {t[p]["status"] for t in report["tables"] for p in ("copy", "load", "transform")} == {"success"}
    assert all(t["copy"]["rows_last_run"] > 0 and t["copy"]["last_success"].endswith(" UTC") for t in report["tables"])
    assert " UTC" in etl_("status").stdout
    assert (tmp_path / "cache" / "opendental-etl" / "dbt" / "target").is_dir()  # dbt's files not in site-packages
