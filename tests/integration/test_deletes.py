"""Deletes reach the dbt models: a row deleted at the source leaves raw (reconcile, the deletedobject feed),
is recorded in raw.etl_deleted_keys in the same transaction, and leaves the incremental staging model at the
next transform (the post-hook etl_apply_deletes); `etl verify` compares each staging model's keys with raw.

Real MariaDB, PostgreSQL and dbt (in-process), on the demo patient table; keys compared row by row.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap

import pytest
import yaml

from etl import PROJECT_ROOT
from etl.config import load_config
from etl.tools.demo import build_demo_source
from etl.verify import verify
from tests.integration.engine_helpers import Pipeline

pytestmark = pytest.mark.integration

ALL = ("copy", "load", "transform")
GONE = (3, 7, 11)
#: OpenDental's ObjectType of a patient in its deletedobject log (any value works: the feed filters on it).
PATIENT_OBJECT_TYPE = 1


def _shipped(name: str) -> dict:
    return dict(yaml.safe_load((PROJECT_ROOT / "tables.yml").read_text(encoding="utf-8"))["tables"][name])


@pytest.fixture(autouse=True)
def shipped_project(monkeypatch):
    # the shipped dbt project; dbt's target/ and logs/ go to the test's folder (tests/conftest.py)
    for name in ("ETL_DBT_PROJECT_DIR", "DBT_PROFILES_DIR"):
        monkeypatch.delenv(name, raising=False)


def keys(p: Pipeline, where: str) -> list[int]:
    """Every key of a table, in order: `where` is source, raw or staging."""
    if where == "source":
        return [k for (k,) in p.source("SELECT PatNum FROM patient ORDER BY PatNum")]
    if where == "raw":
        return [k for (k,) in p.raw('SELECT "PatNum" FROM raw.patient ORDER BY 1')]
    return [k for (k,) in p.raw("SELECT pat_num FROM staging.stg_patient ORDER BY 1")]


def assert_layers_agree(p: Pipeline) -> list[int]:
    source = keys(p, "source")
    assert keys(p, "raw") == source
    assert keys(p, "staging") == source
    return source


def recorded(p: Pipeline) -> list[tuple]:
    return p.raw("SELECT key_value, key_column, source FROM raw.etl_deleted_keys "
                 "WHERE table_name = 'patient' ORDER BY key_value, load_id")


def test_a_patient_deleted_at_the_source_leaves_raw_and_staging_through_reconcile(settings):
    p = Pipeline(settings, {"patient": {**_shipped("patient"), "delete_detection": "reconcile"}})
    build_demo_source(settings.source_url, scale=0.002, tables=["patient"])
    p.run(ALL)
    before = assert_layers_agree(p)
    assert set(GONE) <= set(before)

    p.source("DELETE FROM patient WHERE PatNum IN (3, 7, 11)")
    result = p.run(ALL)

    # no row changed, only deletes: the transform still takes the table
    assert result[("reconcile", "patient")].rows_written == 2 * len(GONE)   # the replica, then raw
    assert result[("transform", "patient")].strategy == "incremental"
    after = assert_layers_agree(p)
    assert after == [k for k in before if k not in GONE]
    assert recorded(p) == [(k, "PatNum", "reconcile") for k in GONE]
    # recorded under the reconcile run's history id, which the transform's window took
    reconcile_id = p.raw("SELECT max(id) FROM raw.etl_run_history WHERE phase = 'reconcile' AND table_name = 'patient'")
    assert p.raw("SELECT DISTINCT load_id FROM raw.etl_deleted_keys") == reconcile_id
    assert p.raw("SELECT last_load_id FROM raw.etl_transform_status WHERE table_name = 'patient'") == reconcile_id
    assert verify(settings, load_config(settings.tables_path))["ok"]

    # A key deleted and back at the source before the next transform: raw has it again, so staging keeps it.
    p.source("DELETE FROM patient WHERE PatNum = 5")
    p.run(("copy", "load"))   # the reconcile after the load deletes 5 from raw
    assert 5 not in keys(p, "raw") and 5 in keys(p, "staging")
    newest = p.source("SELECT max(DateTStamp) FROM patient")[0][0]
    p.source("INSERT INTO patient (PatNum, LName, DateTStamp) VALUES (5, 'Again', %s)",
             (newest + dt.timedelta(seconds=1),))
    p.run(ALL)
    assert assert_layers_agree(p) == sorted(after)  # 5 is in `after` again
    assert p.raw("SELECT l_name FROM staging.stg_patient WHERE pat_num = 5") == [("Again",)]


def test_a_patient_deleted_through_the_deletedobject_log_leaves_raw_and_staging(settings):
    p = Pipeline(settings, {
        "deletedobject": {"incremental_columns": ["DeletedObjectNum"], "primary_incremental_column": "DeletedObjectNum",
                          "primary_key": "DeletedObjectNum"},
        "patient": {**_shipped("patient"), "delete_detection": "deletedobject",
                    "deleted_object_type": PATIENT_OBJECT_TYPE},
    })
    build_demo_source(settings.source_url, scale=0.002, tables=["patient"])
    p.source("CREATE TABLE deletedobject (DeletedObjectNum bigint NOT NULL AUTO_INCREMENT, ObjectNum bigint NOT NULL, "
             "ObjectType int NOT NULL, DateTStamp timestamp NOT NULL DEFAULT '2024-01-01 00:00:00', "
             "PRIMARY KEY (DeletedObjectNum)) ENGINE=MyISAM")
    p.run(ALL)
    before = assert_layers_agree(p)

    p.source("DELETE FROM patient WHERE PatNum IN (3, 7, 11)")
    p.source("INSERT INTO deletedobject (ObjectNum, ObjectType) VALUES (3, %s), (7, %s), (11, %s), (13, 99)",
             (PATIENT_OBJECT_TYPE,) * 3)
    result = p.run(ALL)

    assert result[("transform", "patient")].strategy == "incremental"
    assert assert_layers_agree(p) == [k for k in before if k not in GONE]
    assert recorded(p) == [(k, "PatNum", "deletedobject") for k in GONE]
    # recorded under the id of the load that deleted them (the load that read the log)
    load_id = p.raw("SELECT max(id) FROM raw.etl_run_history WHERE phase = 'load' AND table_name = 'patient'")
    assert p.raw("SELECT DISTINCT load_id FROM raw.etl_deleted_keys") == load_id
    assert 13 in keys(p, "staging")   # logged under another object type: not a patient


def test_rows_a_full_load_drops_from_raw_leave_the_incremental_model(settings):
    # No delete detection: only `etl load --full` (which replaces raw's rows) notices the deleted rows.
    p = Pipeline(settings, {"patient": _shipped("patient")})
    build_demo_source(settings.source_url, scale=0.002, tables=["patient"])
    p.run(ALL)
    before = assert_layers_agree(p)
    p.source("DELETE FROM patient WHERE PatNum IN (3, 7, 11)")
    p.run(("copy", "load"), full=True)
    assert keys(p, "raw") == keys(p, "source") and set(GONE) <= set(keys(p, "staging"))

    result = p.run(("transform",))   # incremental: not a full refresh of the model

    assert result[("transform", "patient")].strategy == "incremental"
    assert assert_layers_agree(p) == [k for k in before if k not in GONE]


def test_verify_reports_drift_between_a_staging_model_and_raw(settings):
    from tests.integration.test_trust import etl

    p = Pipeline(settings, {"patient": {**_shipped("patient"), "delete_detection": "reconcile"}})
    build_demo_source(settings.source_url, scale=0.002, tables=["patient"])
    p.run(ALL)
    clean = etl(settings, "verify", "--json")
    assert clean.returncode == 0, clean.stderr
    assert "staging.stg_patient" in clean.stderr

    # A key raw has that the model lost, and one the model has that raw never had.
    p.raw("DELETE FROM staging.stg_patient WHERE pat_num = 4")
    p.raw("INSERT INTO staging.stg_patient (pat_num) VALUES (987654)")
    found = etl(settings, "verify", "--json")
    assert found.returncode == 1, found.stderr
    report = json.loads(found.stdout)
    (table,) = report["tables"]
    assert table["status"] == "drift" and table["differing_rows"] == 2
    (model,) = table["staging"]
    assert (model["relation"], model["status"], model["missing"], model["extra"]) == ("staging.stg_patient", "drift", 1, 1)
    assert model["examples"] == {"missing": [4], "extra": [987654]}
    assert "1 missing" in found.stderr and "1 extra" in found.stderr

    # Deleted from raw but not transformed yet: waiting for the next transform, not drift (4 still is).
    p.raw("DELETE FROM staging.stg_patient WHERE pat_num = 987654")
    p.source("DELETE FROM patient WHERE PatNum = 9")
    p.run(("copy", "load"))
    assert 9 not in keys(p, "raw") and 9 in keys(p, "staging")
    pending = verify(settings, load_config(settings.tables_path))
    (model,) = pending["tables"][0]["staging"]
    assert (model["missing"], model["extra"], model["examples"]["missing"]) == (1, 0, [4]), model
    assert not pending["ok"]


def test_a_users_own_model_applies_deletes_with_the_package(settings, tmp_path, monkeypatch):
    p = Pipeline(settings, {"patient": {**_shipped("patient"), "delete_detection": "reconcile"}})
    build_demo_source(settings.source_url, scale=0.002, tables=["patient"])
    root = tmp_path / "clinic_dbt"
    (root / "models").mkdir(parents=True)
    (root / "dbt_project.yml").write_text(textwrap.dedent("""\
        name: clinic
        version: "1.0.0"
        config-version: 2
        profile: opendental_etl
        flags: {send_anonymous_usage_stats: false}
        models:
          clinic:
            +materialized: incremental
        """))
    (root / "packages.yml").write_text(f"packages:\n  - local: {PROJECT_ROOT / 'dbt' / 'etl_tracking'}\n")
    (root / "models" / "sources.yml").write_text(textwrap.dedent("""\
        version: 2
        sources:
          - name: od
            schema: "{{ env_var('ETL_RAW_SCHEMA') }}"
            tables: [{name: patient}]
        """))
    (root / "models" / "clinic_patients.sql").write_text(textwrap.dedent("""\
        {{ config(unique_key='patient_id', post_hook=[
            "{{ etl_tracking.etl_record_transform('patient') }}",
            "{{ etl_tracking.etl_apply_deletes('patient', {'PatNum': 'patient_id'}) }}"]) }}
        select "PatNum" as patient_id, "LName" as last_name, "_etl_load_id" from {{ source('od', 'patient') }}
        where {{ etl_tracking.etl_incremental_filter('patient') }}
        """))
    monkeypatch.setenv("ETL_DBT_PROJECT_DIR", str(root))

    p.run(ALL)
    p.source("DELETE FROM patient WHERE PatNum IN (3, 7, 11)")
    p.run(ALL)

    source = keys(p, "source")
    assert keys(p, "raw") == source
    assert [k for (k,) in p.raw("SELECT patient_id FROM analytics.clinic_patients ORDER BY 1")] == source
    report = verify(settings, load_config(settings.tables_path))
    assert report["ok"], report
    assert [m["relation"] for m in report["tables"][0]["staging"]] == ["analytics.clinic_patients"]
