"""`etl demo-data`: the demo source database matches the fact sheet, is deterministic and has the quirks."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

from etl import PROJECT_ROOT
from etl.config import load_config
from etl.tools.demo import (
    FILL_ORDER,
    DEMO_TABLES_PATH,
    _parse_column,
    build_demo_source,
    demo_row_counts,
    demo_tables,
)
from etl.errors import ConfigError
from tests.conftest import MYSQL_URL, mysql_conn

pytestmark = pytest.mark.integration

SCALE = 0.002  # procedurelog 1,636 rows, securitylog 9,475; lookups keep their real size
AS_OF = datetime(2025, 6, 1, 12, 30, tzinfo=timezone.utc)
FACT_SHEET = PROJECT_ROOT.parent / "shared" / "opendental" / "schema.yml"


def _url(name: str):
    return make_url(MYSQL_URL).set(database=name)


def _query(url, sql: str, *params):
    conn = mysql_conn(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.execute(sql, params or None)
            return cur.fetchall()
    finally:
        conn.close()


def _checksums(url) -> dict[str, int]:
    rows = _query(url, "CHECKSUM TABLE " + ", ".join(f"`{t}`" for t in FILL_ORDER))
    return {name.split(".", 1)[1]: value for name, value in rows}


@pytest.fixture
def built(mysql_database):
    url = _url(mysql_database("etldemo", create=False))
    return url, build_demo_source(url, scale=SCALE, seed=42)


def test_tables_match_the_fact_sheet(built):
    url, written = built
    engines = dict(_query(url, "SELECT TABLE_NAME, ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
                          url.database))
    assert engines == {name: "MyISAM" for name in FILL_ORDER}
    actual = _query(url, """
        SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, COLLATION_NAME
        FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, ORDINAL_POSITION""",
                    url.database)
    expected = []
    for name in sorted(FILL_ORDER):
        for c in demo_tables()[name].columns:
            extra = "auto_increment" if c.auto_increment else ""
            if c.on_update_current_timestamp:
                extra = "on update current_timestamp()"
            default = c.default if c.default is not None else (None if c.not_null else "NULL")
            expected.append((name, c.name, c.type, "NO" if c.not_null else "YES", default, extra))
    assert [row[:6] for row in actual] == expected
    collations = {(t, c): coll for t, c, *_, coll in actual if coll and coll.startswith("utf8mb3")}
    assert collations == {(t.name, c.name): c.collate for t in demo_tables().values() for c in t.columns if c.collate}
    keys = _query(url, """
        SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE
        WHERE TABLE_SCHEMA = %s AND CONSTRAINT_NAME = 'PRIMARY'""", url.database)
    assert sorted(keys) == sorted((n, demo_tables()[n].primary_key[0]) for n in FILL_ORDER)


def test_row_counts_match(built):
    url, written = built
    counts = demo_row_counts(SCALE)
    assert written == counts
    for name, rows in counts.items():
        assert _query(url, f"SELECT COUNT(*) FROM `{name}`") == ((rows,),)


def test_quirks_are_present(built):
    url, _ = built
    checks = {
        "sentinel date": "SELECT COUNT(*) FROM procedurelog WHERE DateOriginalProsth = '0001-01-01'",
        "zero date": "SELECT COUNT(*) FROM procedurelog WHERE CAST(DateTP AS CHAR) = '0000-00-00'",
        "sentinel datetime": "SELECT COUNT(*) FROM patient WHERE CAST(DateTimeDeceased AS CHAR) LIKE '0001-01-01%'",
        "empty string": "SELECT COUNT(*) FROM patient WHERE HmPhone = ''",
        "NULL in a nullable column": "SELECT COUNT(*) FROM commlog WHERE Note IS NULL",
        "TIME above 24 hours": "SELECT COUNT(*) FROM procedurelog WHERE TIME_TO_SEC(ProcTime) > 86400",
        "negative TIME": "SELECT COUNT(*) FROM procedurelog WHERE TIME_TO_SEC(ProcTime) < 0",
        "unsigned tinyint above 127": "SELECT COUNT(*) FROM procedurelog WHERE PlaceService > 127",
        "negative signed tinyint": "SELECT COUNT(*) FROM claimproc WHERE Percentage = -1",
        "a note of several KB": "SELECT COUNT(*) FROM commlog WHERE LENGTH(Note) > 2000",
        "a 4-byte character": "SELECT COUNT(*) FROM commlog WHERE Note LIKE '%🦷%'",
        "an apostrophe": "SELECT COUNT(*) FROM patient WHERE LName = 'O''Brien'",
        "cents": "SELECT COUNT(*) FROM procedurelog WHERE ProcFee <> ROUND(ProcFee) AND ProcFee <> ROUND(ProcFee, 1)",
        "a fee in thirds": "SELECT COUNT(*) FROM procedurelog WHERE ProcFee * 3 BETWEEN ROUND(ProcFee * 3) - 0.02 "
                           "AND ROUND(ProcFee * 3) + 0.02 AND ProcFee * 100 % 100 IN (33, 67)",
    }
    missing = [what for what, sql in checks.items() if _query(url, sql)[0][0] == 0]
    assert missing == []


def test_foreign_keys_point_at_existing_rows(built):
    url, _ = built
    orphans = {
        "procedurelog.PatNum": "SELECT COUNT(*) FROM procedurelog p LEFT JOIN patient x ON x.PatNum = p.PatNum "
                               "WHERE x.PatNum IS NULL",
        "procedurelog.ProvNum": "SELECT COUNT(*) FROM procedurelog p LEFT JOIN provider x ON x.ProvNum = p.ProvNum "
                                "WHERE x.ProvNum IS NULL",
        "procedurelog.CodeNum": "SELECT COUNT(*) FROM procedurelog p LEFT JOIN procedurecode x "
                                "ON x.CodeNum = p.CodeNum WHERE x.CodeNum IS NULL",
        "procedurelog.AptNum": "SELECT COUNT(*) FROM procedurelog p LEFT JOIN appointment x ON x.AptNum = p.AptNum "
                               "WHERE p.AptNum <> 0 AND x.AptNum IS NULL",
        "paysplit.PayNum": "SELECT COUNT(*) FROM paysplit p LEFT JOIN payment x ON x.PayNum = p.PayNum "
                           "WHERE x.PayNum IS NULL",
        "claimproc.ProcNum": "SELECT COUNT(*) FROM claimproc p LEFT JOIN procedurelog x ON x.ProcNum = p.ProcNum "
                             "WHERE x.ProcNum IS NULL",
        "patient.Guarantor": "SELECT COUNT(*) FROM patient p LEFT JOIN patient x ON x.PatNum = p.Guarantor "
                             "WHERE x.PatNum IS NULL",
    }
    assert {what: _query(url, sql)[0][0] for what, sql in orphans.items()} == {what: 0 for what in orphans}


def test_timestamps_are_past_spread_and_shared(built):
    url, _ = built
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    for table, column in (("procedurelog", "DateTStamp"), ("payment", "SecDateTEdit"), ("commlog", "DateTStamp")):
        nulls, low, high, distinct, total = _query(
            url, f"SELECT SUM({column} IS NULL), MIN({column}), MAX({column}), COUNT(DISTINCT {column}), COUNT(*) "
                 f"FROM {table}")[0]
        assert nulls == 0
        assert high <= now - timedelta(hours=1)
        assert high - low > timedelta(days=2 * 365)
        assert distinct < total  # bulk edits: many rows share one second
    (biggest,) = _query(url, "SELECT MAX(c) FROM (SELECT COUNT(*) AS c FROM procedurelog GROUP BY DateTStamp) AS g")[0]
    assert biggest >= 10


def test_same_seed_same_data_other_seed_other_data(mysql_database):
    first, again, other = (_url(mysql_database("etldemo", create=False)) for _ in range(3))
    for url, seed in ((first, 7), (again, 7), (other, 8)):
        build_demo_source(url, scale=SCALE, seed=seed, as_of=AS_OF)
    sums = _checksums(first)
    assert _checksums(again) == sums
    changed = _checksums(other)
    assert all(changed[name] != sums[name] for name in FILL_ORDER), (sums, changed)
    (latest,) = _query(first, "SELECT MAX(DateTStamp) FROM procedurelog")[0]
    assert latest == datetime(2025, 6, 1, 11, 0)  # one hour before AS_OF, on the hour (a bulk edit)


def test_table_subset_and_rebuild(mysql_database):
    url = _url(mysql_database("etldemo", create=False))
    build_demo_source(url, scale=SCALE, seed=1)
    assert build_demo_source(url, scale=SCALE, seed=1, tables=["provider", "recalltype"]) == {
        "provider": 59, "recalltype": 10}
    tables = [t for (t,) in _query(url, "SHOW TABLES")]
    assert sorted(tables) == ["provider", "recalltype"]  # the database was dropped and re-created


def test_bad_input_is_refused_before_touching_the_server():
    url = _url("etldemo_never_created")
    with pytest.raises(ConfigError, match="not a table of the fact sheet"):
        build_demo_source(url, tables=["procedurelog", "eservicelog"])
    with pytest.raises(ConfigError, match="not both"):
        build_demo_source(url, tables=["procedurelog"], clinic=True)
    with pytest.raises(ConfigError, match="jobs"):
        build_demo_source(url, jobs=0)
    with pytest.raises(ConfigError, match="scale"):
        demo_row_counts(0)
    with pytest.raises(ConfigError, match="seed"):
        build_demo_source(url, seed=-1)
    with pytest.raises(ConfigError, match="default"):
        _parse_column({"name": "Evil", "type": "int(11)", "default": "0; DROP DATABASE x"}, "test")
    with pytest.raises(ConfigError, match="type"):
        _parse_column({"name": "Evil", "type": "int(11) DEFAULT 1 COMMENT 'x'"}, "test")
    assert _query(make_url(MYSQL_URL), "SHOW DATABASES LIKE 'etldemo_never_created'") == ()


def test_row_counts_scale_with_the_clinic():
    clinic = demo_row_counts(1.0)
    assert clinic == {name: t.estimated_rows for name, t in demo_tables().items()}
    assert clinic["procedurelog"] == 818_050 and clinic["definition"] == 655
    tiny = demo_row_counts(0.0001)
    assert tiny["definition"] == 655 and tiny["provider"] == 59 and tiny["recalltype"] == 10
    assert min(tiny.values()) >= 10


def test_vendored_extract_and_tables_yml_agree_with_the_fact_sheet():
    vendored = yaml.safe_load(DEMO_TABLES_PATH.read_text(encoding="utf-8"))["tables"]
    assert len(vendored) == 93 and set(FILL_ORDER) <= set(vendored)
    assert sum(t["estimated_rows"] for t in vendored.values()) == 18_807_284
    if FACT_SHEET.is_file():
        facts = yaml.safe_load(FACT_SHEET.read_text(encoding="utf-8"))["tables"]
        assert facts == vendored
    config = load_config(PROJECT_ROOT / "tables.yml")
    assert set(config.tables) == set(FILL_ORDER)
    for name, table in demo_tables().items():
        settings = config.tables[name]
        assert settings.primary_key == table.primary_key
        assert settings.incremental_columns == table.incremental_columns
        assert settings.extraction_strategy == table.extraction_strategy
        expected = None if name == "appointment" else table.primary_incremental_column
        assert settings.primary_incremental_column == expected
    strategies = {t.extraction_strategy for t in config.tables.values()}
    assert strategies == {"full_table", "incremental", "incremental_chunked"}
    raw = yaml.safe_load((PROJECT_ROOT / "tables.yml").read_text(encoding="utf-8"))
    assert {"description", "source"} <= set(raw["metadata"])
    assert all(raw["tables"][n]["estimated_rows"] == demo_tables()[n].estimated_rows for n in FILL_ORDER)


def test_the_whole_clinic_matches_the_fact_sheet_with_quirks_and_keys(mysql_database):
    from etl.tools.demo import clinic_tables, foreign_keys

    url = _url(mysql_database("etldemo", create=False))
    written = build_demo_source(url, scale=0.0005, clinic=True, seed=5, as_of=AS_OF, jobs=2)
    facts = clinic_tables()
    assert list(written) == list(facts) and written == demo_row_counts(0.0005, list(facts))
    columns = _query(url, "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
                          "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, ORDINAL_POSITION", url.database)
    assert list(columns) == [(n, c.name, c.type) for n in sorted(facts) for c in facts[n].columns]
    counts = {name: _query(url, f"SELECT COUNT(*) FROM `{name}`")[0][0] for name in facts}
    assert counts == written
    # OpenDental's quirks in tables only the generic fill builds
    generic = {
        "sentinel date": "SELECT COUNT(*) FROM adjustment WHERE AdjDate = '0001-01-01'",
        "zero date": "SELECT COUNT(*) FROM claim WHERE CAST(DateService AS CHAR) = '0000-00-00' "
                     "OR CAST(DateSent AS CHAR) = '0000-00-00' OR CAST(DateReceived AS CHAR) = '0000-00-00'",
        "sentinel datetime": "SELECT COUNT(*) FROM labcase WHERE CAST(DateTimeDue AS CHAR) LIKE '0001-01-01%'",
        "TIME above 24 hours": "SELECT COUNT(*) FROM schedule WHERE TIME_TO_SEC(StartTime) > 86400",
        "unsigned tinyint above 127": "SELECT COUNT(*) FROM sheetfield WHERE GrowthBehavior > 127",
        "empty string": "SELECT COUNT(*) FROM carrier WHERE CarrierName = ''",
        "NULL": "SELECT COUNT(*) FROM sheetfield WHERE FieldValue IS NULL",
    }
    missing = [what for what, sql in generic.items() if _query(url, sql)[0][0] == 0]
    assert missing == []
    now = AS_OF.replace(tzinfo=None)
    (latest,) = _query(url, "SELECT MAX(SecDateTEdit) FROM adjustment")[0]
    assert latest <= now - timedelta(hours=1)
    # a column named like another table's key points at one of its rows (or 0)
    assert foreign_keys()["PatNum"] == "patient" and foreign_keys()["SheetNum"] == "sheet"
    orphans = _query(url, "SELECT COUNT(*) FROM sheetfield f LEFT JOIN sheet s ON s.SheetNum = f.SheetNum "
                          "WHERE f.SheetNum <> 0 AND s.SheetNum IS NULL")[0][0]
    assert orphans == 0
    again = _url(mysql_database("etldemo", create=False))
    build_demo_source(again, scale=0.0005, clinic=True, seed=5, as_of=AS_OF, jobs=1)
    sums = lambda u: dict(_query(u, "CHECKSUM TABLE adjustment, sheetfield, securityloghash, claim"))
    assert {k.split(".")[1]: v for k, v in sums(url).items()} == {k.split(".")[1]: v for k, v in sums(again).items()}


def test_a_database_it_did_not_create_is_refused_unless_forced(mysql_database, tmp_path):
    """`etl demo-data` drops only the databases it marked; anything else is exit 2, one line, untouched."""
    import os
    import subprocess
    import sys

    name = mysql_database("etlnotdemo")  # someone's database, with a table in it
    _query(_url(name), "CREATE TABLE precious (id int PRIMARY KEY)")
    _query(_url(name), "INSERT INTO precious VALUES (1)")
    env = {**os.environ, "ETL_SOURCE_URL": str(_url(name))}
    cmd = [sys.executable, "-m", "etl", "demo-data", "--scale", "0.001"]
    refused = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and "not created by etl demo-data" in lines[0], lines
    assert _query(_url(name), "SELECT id FROM precious") == ((1,),)
    with pytest.raises(ConfigError, match="refusing to drop"):
        build_demo_source(_url(name), scale=SCALE, tables=["definition"])

    # Its own database (marked when created) is rebuilt without asking; the output names it.
    built = subprocess.run(cmd + ["--force"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    assert name in built.stdout.splitlines()[0] and name in built.stdout.splitlines()[-1]
    assert _query(_url(name), "SHOW TABLES LIKE 'precious'") == ()
    again = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr


def test_an_empty_database_is_filled_and_marked(mysql_database):
    name = mysql_database("etlempty")
    build_demo_source(_url(name), scale=SCALE, tables=["definition"])
    build_demo_source(_url(name), scale=SCALE, tables=["definition"])  # now its own: rebuilt
    assert _query(_url(name), "SELECT COUNT(*) FROM definition")[0][0] > 0
