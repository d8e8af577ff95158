"""`etl discover` against real fact-sheet-shaped sources: the config it writes is accepted by check-config, run
and verify (zero drift, changes and deletes included); --check's exit codes; the merge keeps your entries."""

from __future__ import annotations

import time

import pytest
import yaml

from etl.config import load_config
from etl.tools.demo import build_demo_source
from etl.migrate import migrate
from etl.runner import run_phases
from etl.verify import verify
from tests.conftest import mysql_conn
from tests.integration.test_trust import etl

pytestmark = pytest.mark.integration

# One table per rule at --scale 0.01 and --full-table-rows 50: server stamps (procedurelog, patient, taskhist,
# where a workstation DATETIME named DateTStamp sits next to the server's SecDateTEdit), append-only logs on
# their key (securitylog, definition), OR fallbacks on workstation edit stamps (sheet, perioexam), full_table
# (recalltype: 10 rows).
TABLES = ["definition", "recalltype", "provider", "patient", "procedurelog", "securitylog", "sheet", "perioexam",
          "taskhist", "schedule"]


def source_sql(settings, *statements: str):
    conn = mysql_conn(settings.source_url)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
            return cur.fetchall()
    finally:
        conn.close()


def wait_for_the_horizon(settings, timeout: float = 240.0) -> None:
    """The copy's horizon never passes the start of the oldest open InnoDB write transaction on the server
    (sql_templates/mysql/horizon.sql.j2): on a shared test server another session's long write (someone
    else's benchmark) would leave the edits just made for the run after next. Wait until every write
    transaction open now started after this moment (and its second has closed)."""
    conn = mysql_conn(settings.source_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT NOW(6)")
            (moment,) = cur.fetchone()
            deadline = time.monotonic() + timeout
            while True:
                cur.execute("SELECT COUNT(*) FROM information_schema.INNODB_TRX "
                            "WHERE trx_is_read_only = 0 AND trx_started <= %s", (moment,))
                if cur.fetchone()[0] == 0:
                    break
                assert time.monotonic() < deadline, f"a write transaction open since before {moment} is still open"
                time.sleep(0.5)
            cur.execute("DO SLEEP(1.1)")  # the edits' second closes before the run's horizon
    finally:
        conn.close()


def discover(settings, *args: str):
    return etl(settings, "discover", "--no-diff", *args)


@pytest.fixture
def clinic(settings):
    build_demo_source(settings.source_url, scale=0.01, tables=TABLES, seed=3)
    migrate(settings)
    return settings


def entries(settings) -> dict:
    return yaml.safe_load(settings.tables_path.read_text(encoding="utf-8"))


def assert_no_drift(settings) -> None:
    report = verify(settings, load_config(settings.tables_path))
    assert report["ok"] and report["differing_rows"] == 0, report


def test_discovered_config_runs_and_verifies_with_zero_drift(clinic):
    result = discover(clinic, "--full-table-rows", "50")
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    doc = entries(clinic)
    tables = doc["tables"]
    assert set(tables) == set(TABLES)
    picks = {name: (t["primary_incremental_column"], t["extraction_strategy"], t["delete_detection"])
             for name, t in tables.items()}
    assert picks == {
        "definition": ("DefNum", "incremental", "none"),
        "recalltype": ("RecallTypeNum", "full_table", "none"),
        "provider": ("DateTStamp", "incremental", "reconcile"),
        "patient": ("DateTStamp", "incremental", "reconcile"),
        "procedurelog": ("DateTStamp", "incremental", "reconcile"),
        "securitylog": ("SecurityLogNum", "incremental", "none"),
        "sheet": ("none", "incremental", "reconcile"),
        "perioexam": ("none", "incremental", "reconcile"),
        "taskhist": ("SecDateTEdit", "incremental", "reconcile"),
        "schedule": ("DateTStamp", "incremental", "reconcile"),
    }
    assert tables["sheet"]["incremental_columns"] == ["SheetNum", "DateTSheetEdited"]
    assert doc["metadata"]["discover"]["full_table_max_rows"] == 50
    assert doc["metadata"]["discover"]["source"]["database"] == clinic.source_url.database
    assert all(t["estimated_rows"] > 0 and "why" in t["x_discover"] for t in tables.values())

    check = etl(clinic, "check-config")
    assert check.returncode == 0, check.stdout + check.stderr
    config = load_config(clinic.tables_path)
    results = run_phases(clinic, config, ["copy", "load"])
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    assert {r.table for r in results if r.phase == "reconcile"} == {n for n, p in picks.items() if p[2] == "reconcile"}
    assert_no_drift(clinic)

    # a day at the clinic: edits (server stamps, a workstation edit stamp), inserts, deletes
    source_sql(clinic,
               "UPDATE procedurelog SET ProcFee = ProcFee + 1 WHERE ProcNum % 5 = 0",
               "DELETE FROM procedurelog WHERE ProcNum % 17 = 0",
               "UPDATE sheet SET Description = 'edited', DateTSheetEdited = NOW() - INTERVAL 2 SECOND "
               "WHERE SheetNum % 3 = 0",
               "DELETE FROM sheet WHERE SheetNum = 7",
               "INSERT INTO securitylog (PermType, UserNum, LogDateTime, LogText, PatNum, CompName, FKey, LogSource, "
               "DefNum, DefNumError, DateTPrevious) SELECT PermType, UserNum, NOW(), 'new', PatNum, CompName, FKey, "
               "LogSource, DefNum, DefNumError, DateTPrevious FROM securitylog ORDER BY SecurityLogNum LIMIT 40",
               "UPDATE patient SET LName = 'Moved' WHERE PatNum % 4 = 1",
               "DELETE FROM schedule WHERE ScheduleNum % 9 = 0")
    wait_for_the_horizon(clinic)
    results = run_phases(clinic, load_config(clinic.tables_path), ["copy", "load"])
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    reconciled = {r.table: r.rows_written for r in results if r.phase == "reconcile"}
    assert reconciled["procedurelog"] > 0 and reconciled["sheet"] == 2 and reconciled["schedule"] > 0
    assert_no_drift(clinic)


def test_check_exits_1_for_a_new_table_and_for_a_new_column(clinic):
    assert discover(clinic).returncode == 0
    first = discover(clinic, "--check")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "covers every table and column" in first.stdout
    before = clinic.tables_path.read_text(encoding="utf-8")

    source_sql(clinic, "CREATE TABLE eservicelog (EServiceLogNum bigint NOT NULL AUTO_INCREMENT, LogDateTime "
                       "datetime NOT NULL, PRIMARY KEY (EServiceLogNum)) ENGINE=MyISAM")
    added = discover(clinic, "--check")
    assert added.returncode == 1
    assert "table 'eservicelog' of the source is not covered" in added.stdout
    assert clinic.tables_path.read_text(encoding="utf-8") == before  # --check writes nothing

    source_sql(clinic, "DROP TABLE eservicelog")
    assert discover(clinic, "--check").returncode == 0
    source_sql(clinic, "ALTER TABLE patient ADD COLUMN PreferredPronoun varchar(20) NOT NULL DEFAULT ''")
    column = discover(clinic, "--check")
    assert column.returncode == 1
    assert "table 'patient': column(s) PreferredPronoun of the source are not covered" in column.stdout

    assert discover(clinic).returncode == 0  # what the nightly's operator does after an upgrade
    assert discover(clinic, "--check").returncode == 0
    source_sql(clinic, "ALTER TABLE patient DROP COLUMN PreferredPronoun")
    dropped = discover(clinic, "--check")
    assert dropped.returncode == 0 and "PreferredPronoun no longer exist" in dropped.stdout


def test_rerun_keeps_your_entry_and_adds_new_tables(clinic):
    assert discover(clinic).returncode == 0
    text = clinic.tables_path.read_text(encoding="utf-8")
    mine = text.replace("  procedurelog:\n", "  procedurelog:   # tuned by hand, keep\n", 1)
    lines = mine.split("\n")
    start = lines.index("  procedurelog:   # tuned by hand, keep")
    batch = next(i for i in range(start, len(lines)) if lines[i].startswith("    batch_size:"))
    lines[batch] = "    batch_size: 1234   # small batches for this table"
    clinic.tables_path.write_text("\n".join(lines), encoding="utf-8")
    procedurelog_block = "\n".join(lines[start:batch + 1])

    source_sql(clinic, "CREATE TABLE eservicelog (EServiceLogNum bigint NOT NULL AUTO_INCREMENT, LogDateTime "
                       "datetime NOT NULL, PRIMARY KEY (EServiceLogNum)) ENGINE=MyISAM",
               "CREATE TABLE tmpimport (Line text)",
               "DROP TABLE recalltype")
    result = discover(clinic)
    assert result.returncode == 0, result.stderr
    assert "kept (yours): procedurelog" in result.stdout
    assert "added: eservicelog" in result.stdout
    assert "removed (gone from the source or excluded): recalltype" in result.stdout
    assert "not configured: tmpimport: no primary key" in result.stdout
    text = clinic.tables_path.read_text(encoding="utf-8")
    assert procedurelog_block in text  # your text, comments included
    doc = entries(clinic)
    assert doc["tables"]["procedurelog"]["batch_size"] == 1234
    assert "recalltype" not in doc["tables"] and "tmpimport" not in doc["tables"]
    assert "tmpimport" in doc["metadata"]["discover"]["unconfigured"]
    assert etl(clinic, "check-config").returncode == 0
    assert discover(clinic, "--check").returncode == 0  # the unkeyed table is known, not new


def test_opendental_version_comes_from_the_preference_table(clinic):
    source_sql(clinic, "CREATE TABLE preference (PrefNum bigint NOT NULL AUTO_INCREMENT, PrefName varchar(255) NOT "
                       "NULL DEFAULT '', ValueString text NOT NULL, Comment text, PRIMARY KEY (PrefNum)) ENGINE=MyISAM",
               "INSERT INTO preference (PrefName, ValueString) VALUES ('AccountingCashIncomeAccount', '0'), "
               "('DataBaseVersion', '24.2.15.0'), ('UpdateInProgressOnComputerName', '')")
    result = discover(clinic)
    assert result.returncode == 0 and "OpenDental 24.2.15.0" in result.stdout
    meta = entries(clinic)["metadata"]["discover"]["source"]
    assert meta["opendental_version"] == "24.2.15.0" and meta["server_version"]
