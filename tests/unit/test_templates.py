"""Every template under sql_templates/mysql and sql_templates/postgres is rendered by some test.

Templates used by `etl render` (etl.inspect.statements_for) are covered by the golden files; every other
one is rendered here with the context its call site passes, and its binds are compared with the
parameters that call site supplies (the aiosql-style two-way check, done before any database sees it).
Macro libraries (``_*.sql.j2``) are covered through the templates that import them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from etl.plan import Bound
from etl.render import DIALECTS, TEMPLATE_DIR, Ident, render
from tests import snapshot_cases as sc

PATIENT = sc.table_schema("patient")
COLUMNS = PATIENT.columns
KEY = PATIENT.primary_key
STATUS_COLUMNS = ("table_name", "column_name", "last_value")

Context = Callable[[], dict[str, Any]]

# template -> (context factory, binds its call site passes)
RENDER_CASES: dict[str, tuple[Context, set[str]]] = {
    # ---- MySQL: DDL of the replica (etl/phases/copy.py, etl/migrate.py)
    "mysql/add_column": (lambda: dict(table=Ident("patient"), column=PATIENT.column("DateTStamp")), set()),
    "mysql/create_database": (lambda: dict(database=Ident("opendental_replication")), set()),
    "mysql/create_replica_table": (lambda: dict(table=Ident("patient"), columns=COLUMNS, key=KEY), set()),
    "mysql/create_replica_index": (lambda: dict(name=Ident("ix_etl_DateTStamp"), table=Ident("patient"),
                                                columns=(Ident("DateTStamp"), Ident("PatNum"))), set()),
    "mysql/create_shadow_table": (lambda: dict(shadow=Ident("patient__etl_new"), table=Ident("patient")), set()),
    "mysql/drop_table": (lambda: dict(table=Ident("patient__etl_old")), set()),
    "mysql/swap_tables": (lambda: dict(table=Ident("patient"), old=Ident("patient__etl_old"),
                                       shadow=Ident("patient__etl_new")), set()),
    "mysql/table_is_empty": (lambda: dict(table=Ident("patient")), set()),
    # ---- MySQL: sessions, clocks, bounds (etl/db.py, etl/execute.py, etl/phases/*)
    "mysql/session_init": (dict, set()),
    "mysql/start_snapshot": (dict, set()),
    "mysql/read_committed": (dict, set()),
    "mysql/horizon": (dict, set()),
    "mysql/max_value": (lambda: dict(database=Ident("opendental"), table=Ident("patient"), column=Ident("PatNum")),
                        set()),
    "mysql/copy_window_max": (lambda: dict(bound=Bound(Ident("DateTStamp"), "datetime", 1, 2), table=Ident("patient"),
                                           database=Ident("opendental_replication")), {"w0_lo", "w0_hi"}),
    "mysql/lock_acquire": (dict, {"lock_name", "timeout_seconds"}),
    # ---- MySQL: block reads, the separate-servers copy, the watermark second (etl/execute.py, etl/phases/*)
    "mysql/session_blocks": (dict, set()),
    "mysql/session_blocks_limit": (dict, set()),
    "mysql/local_infile_enabled": (dict, set()),
    "mysql/copy_stage_clear": (lambda: dict(stage=Ident("_etl_copy_stage")), set()),
    "mysql/copy_stage_drop": (lambda: dict(stage=Ident("_etl_copy_stage")), set()),
    "mysql/copy_upsert": (lambda: dict(table=Ident("patient"), columns=tuple(c.name for c in COLUMNS),
                                       update_columns=tuple(c.name for c in COLUMNS[1:])),
                          {f"v{i}" for i in range(len(COLUMNS))}),
    "mysql/copy_select_rows": (lambda: dict(plan=sc.plan_for(sc.demo_config()["patient"], "copy", "primary"),
                                            database=Ident("opendental"), after_key=True),
                               {"w0_lo", "w0_hi", "k0", "k1", "batch_size"}),
    "mysql/watermark_rows": (lambda: dict(database=Ident("opendental_replication"), table=Ident("patient"),
                                          column=Ident("DateTStamp")), {"value"}),
    "mysql/watermark_last_key": (lambda: dict(database=Ident("opendental_replication"), table=Ident("patient"),
                                              column=Ident("DateTStamp"), key=KEY), {"value"}),
    "postgres/watermark_last_key": (lambda: dict(schema=Ident("raw"), table=Ident("patient"),
                                                 column=Ident("DateTStamp"), key=KEY), {"value"}),
    "postgres/session_fast_commit": (dict, set()),
    "mysql/alembic_version": (dict, set()),
    "postgres/alembic_version": (lambda: dict(schema=Ident("raw")), set()),
    "postgres/load_stage_differs": (lambda: dict(schema=Ident("raw"), table=Ident("definition"),
                                                 stage=Ident("_etl_stage"), columns=tuple(c.name for c in COLUMNS)),
                                    set()),
    "postgres/load_replace_from_stage": (lambda: dict(schema=Ident("raw"), table=Ident("definition"),
                                                      stage=Ident("_etl_stage"),
                                                      columns=tuple(c.name for c in COLUMNS)), set()),
    "mysql/bench/history_mark": (dict, set()),
    "mysql/bench/history_rows": (dict, {"after"}),
    "mysql/bench/count_rows": (lambda: dict(database=Ident("etlbench_base"), table=Ident("patient")), set()),
    "mysql/bench/server_info": (dict, set()),
    "postgres/bench/history_mark": (lambda: dict(schema=Ident("raw")), set()),
    "postgres/bench/history_rows": (lambda: dict(schema=Ident("raw")), {"after"}),
    "postgres/bench/count_rows": (lambda: dict(schema=Ident("raw"), table=Ident("patient")), set()),
    "postgres/bench/server_info": (dict, set()),
    # ---- the benchmark (etl/bench.py)
    "mysql/bench/pipe_select": (lambda: dict(columns=COLUMNS, database=Ident("etlbench_src"), table=Ident("patient")),
                                set()),
    "mysql/bench/insert_select": (lambda: dict(target_db=Ident("etlbench_base"), source_db=Ident("etlbench_src"),
                                               table=Ident("patient"), columns=tuple(c.name for c in COLUMNS)), set()),
    "mysql/bench/create_like": (lambda: dict(target_db=Ident("etlbench_base"), source_db=Ident("etlbench_rep"),
                                             table=Ident("patient")), set()),
    "mysql/bench/drop_table": (lambda: dict(database=Ident("etlbench_base"), table=Ident("patient")), set()),
    "mysql/bench/touch_rows": (lambda: dict(database=Ident("etlbench_src"), table=Ident("patient"),
                                            column=Ident("EstBalance"), key=Ident("PatNum")),
                               {"modulus", "remainder"}),
    "postgres/bench/create_like": (lambda: dict(schema=Ident("raw"), target=Ident("patient__pipe"),
                                                table=Ident("patient")), set()),
    "postgres/bench/drop_table": (lambda: dict(schema=Ident("raw"), table=Ident("patient__pipe")), set()),
    "postgres/bench/drop_database": (lambda: dict(database=Ident("etlbench_ana")), set()),
    # ---- the clinic benchmark (etl/bench_clinic.py)
    "mysql/bench_clinic/history_phases": (dict, {"after"}),
    "postgres/bench_clinic/history_phases": (lambda: dict(schema=Ident("raw")), {"after"}),
    "mysql/bench_clinic/session_local_time": (dict, set()),
    "mysql/bench_clinic/history_slowest": (dict, {"after", "top"}),
    "postgres/bench_clinic/history_slowest": (lambda: dict(schema=Ident("raw")), {"after", "top"}),
    "mysql/bench_clinic/key_range": (lambda: dict(database=Ident("etlbench_src"), table=Ident("patient"),
                                                  key=Ident("PatNum")), set()),
    "mysql/bench_clinic/probe_update": (lambda: dict(database=Ident("etlbench_src"), table=Ident("patient"),
                                                     key=Ident("PatNum")), {"key"}),
    "mysql/bench_clinic/day_update": (lambda: dict(database=Ident("etlbench_src"), table=Ident("patient"),
                                                   key=Ident("PatNum"), touch=Ident("EstBalance"),
                                                   now_columns=(Ident("DateTStamp"),)),
                                      {"lo", "hi", "modulus", "remainder"}),
    "mysql/bench_clinic/day_insert": (lambda: dict(database=Ident("etlbench_src"), table=Ident("patient"),
                                                   key=Ident("PatNum"), columns=tuple(c.name for c in COLUMNS[1:]),
                                                   stamp_columns=(Ident("DateTStamp"),),
                                                   now_columns=(Ident("SecDateEntry"),)), {"lo", "hi"}),
    "mysql/bench_clinic/day_delete": (lambda: dict(database=Ident("etlbench_src"), table=Ident("patient"),
                                                   key=Ident("PatNum")), {"lo", "hi", "modulus", "remainder"}),
    # ---- MySQL: verify and reconcile (row hashes per key bucket; deleted keys)
    "mysql/verify_key_range": (lambda: dict(database=Ident("opendental"), table=Ident("patient"), key=Ident("PatNum")),
                               set()),
    "mysql/verify_buckets": (lambda: dict(database=Ident("opendental"), table=Ident("patient"), key=Ident("PatNum"),
                                          columns=COLUMNS), {"lo", "hi", "span"}),
    "mysql/verify_rows": (lambda: dict(database=Ident("opendental"), table=Ident("patient"), key=Ident("PatNum"),
                                       columns=COLUMNS), {"lo", "hi"}),
    "mysql/reconcile_delete": (lambda: dict(table=Ident("patient"), key=Ident("PatNum")), {"keys"}),
    "mysql/deleted_objects": (lambda: dict(database=Ident("opendental")), {"object_type", "after", "batch_size"}),
    "mysql/existing_keys": (lambda: dict(database=Ident("opendental"), table=Ident("appointment"),
                                         key=Ident("AptNum")), {"keys"}),
    # ---- MySQL: reflection (etl/schema.py)
    "mysql/reflect_table": (dict, {"schema", "table"}),
    "mysql/reflect_columns": (dict, {"schema", "table"}),
    # ---- MySQL: etl discover / etl dbt-sources (information_schema of the whole source database)
    "mysql/discover_server": (dict, set()),
    "mysql/discover_tables": (dict, {"schema"}),
    "mysql/discover_columns": (dict, {"schema"}),
    "mysql/discover_keys": (dict, {"schema"}),
    "mysql/discover_opendental_version": (lambda: dict(database=Ident("opendental"), table=Ident("preference")),
                                          {"pref_name"}),
    "mysql/reflect_primary_key": (dict, {"schema", "table"}),
    "mysql/reflect_indexes": (dict, {"schema", "table"}),
    # ---- MySQL: copy tracking (etl/tracking.py, etl/status.py)
    "mysql/copy_status_select": (dict, {"table_name"}),
    "mysql/copy_status_all": (dict, set()),
    "mysql/copy_status_init": (dict, {"table_name", "primary_column_name"}),
    "mysql/copy_status_mark": (dict, {"table_name", "primary_column_name", "copy_status"}),
    "mysql/copy_column_status_select": (dict, {"table_name"}),
    "mysql/copy_column_status_clear": (dict, {"table_name"}),
    "mysql/copy_column_status_upsert": (dict, set(STATUS_COLUMNS)),
    # ---- MySQL: demo source (etl/demo.py)
    "mysql/demo/create_database": (lambda: dict(database=Ident("opendental_demo")), set()),
    "mysql/demo/drop_database": (lambda: dict(database=Ident("opendental_demo")), set()),
    "mysql/demo/session_fill": (dict, set()),
    # ---- PostgreSQL: DDL of raw (etl/phases/load.py, etl/migrate.py)
    "postgres/create_database": (lambda: dict(database=Ident("opendental_analytics")), set()),
    "postgres/create_schema": (lambda: dict(schema=Ident("raw")), set()),
    "postgres/create_raw_table": (lambda: dict(schema=Ident("raw"), table=Ident("patient"), columns=COLUMNS,
                                               key=KEY), set()),
    "postgres/create_load_marker_index": (lambda: dict(name=Ident("ix_patient__etl_load_id"), schema=Ident("raw"),
                                                       table=Ident("patient")), set()),
    "postgres/add_column": (lambda: dict(schema=Ident("raw"), table=Ident("patient"),
                                         column=PATIENT.column("DateTStamp")), set()),
    "postgres/table_is_empty": (lambda: dict(schema=Ident("raw"), table=Ident("patient")), set()),
    "postgres/reflect_columns": (dict, {"schema", "table"}),
    "postgres/next_run_id": (dict, {"history_table"}),
    "postgres/lock_timeout": (dict, {"lock_timeout"}),
    "postgres/lock_acquire": (dict, {"lock_name"}),
    # ---- PostgreSQL: verify and reconcile
    "postgres/verify_key_range": (lambda: dict(schema=Ident("raw"), table=Ident("patient"), key=Ident("PatNum")),
                                  set()),
    "postgres/verify_buckets": (lambda: dict(schema=Ident("raw"), table=Ident("patient"), key=Ident("PatNum"),
                                             columns=COLUMNS), {"lo", "hi", "span"}),
    "postgres/verify_rows": (lambda: dict(schema=Ident("raw"), table=Ident("patient"), key=Ident("PatNum"),
                                          columns=COLUMNS), {"lo", "hi"}),
    "postgres/reconcile_delete": (lambda: dict(schema=Ident("raw"), table=Ident("patient"), key=Ident("PatNum")),
                                  {"keys"}),
    # ---- PostgreSQL: load and transform tracking (etl/tracking.py, etl/status.py)
    "postgres/load_status_select": (lambda: dict(schema=Ident("raw")), {"table_name"}),
    "postgres/load_status_all": (lambda: dict(schema=Ident("raw")), set()),
    "postgres/load_status_init": (lambda: dict(schema=Ident("raw")), {"table_name", "primary_column_name"}),
    "postgres/load_status_mark": (lambda: dict(schema=Ident("raw")),
                                  {"table_name", "primary_column_name", "load_status"}),
    "postgres/load_column_status_select": (lambda: dict(schema=Ident("raw")), {"table_name"}),
    "postgres/load_column_status_clear": (lambda: dict(schema=Ident("raw")), {"table_name"}),
    "postgres/load_column_status_upsert": (lambda: dict(schema=Ident("raw")), set(STATUS_COLUMNS)),
    "postgres/transform_status_all": (lambda: dict(schema=Ident("raw")), set()),
    "postgres/transform_status_init": (lambda: dict(schema=Ident("raw")), {"table_name", "primary_column_name"}),
    # ---- PostgreSQL: the transform phase (etl/phases/transform.py)
    "postgres/transform_state_select": (lambda: dict(schema=Ident("raw")), {"table_name"}),
    "postgres/transform_pending": (lambda: dict(schema=Ident("raw"), table=Ident("patient"), has_after=True),
                                   {"through", "after"}),
    "postgres/transform_status_mark": (lambda: dict(schema=Ident("raw")),
                                       {"table_name", "primary_column_name", "last_primary_value", "last_load_id",
                                        "transformation_status"}),
    "postgres/transform_status_select": (lambda: dict(schema=Ident("raw")), {"table_name"}),
}


def all_templates() -> list[str]:
    """Every statement template (not macro libraries) as a render name, e.g. 'mysql/demo/fill_patient'."""
    names = []
    for dialect in DIALECTS:
        for path in sorted((TEMPLATE_DIR / dialect).rglob("*.sql.j2")):
            if not path.name.startswith("_"):
                names.append(path.relative_to(TEMPLATE_DIR).as_posix()[: -len(".sql.j2")])
    return names


def demo_templates() -> dict[str, Any]:
    """mysql/demo/create_table renders once per fact-sheet table, mysql/demo/fill_<table> once per hand-tuned
    demo table and fill_generic once per other table (tests below)."""
    from etl import demo

    return demo.clinic_tables()


def fill_template(table: str) -> str:
    from etl import demo

    return f"mysql/demo/fill_{table}" if table in demo.FILL_ORDER else "mysql/demo/fill_generic"


GOLDEN_TEMPLATES = {c.template for c in sc.cases()}


def test_every_template_is_rendered_by_some_test() -> None:
    covered = GOLDEN_TEMPLATES | set(RENDER_CASES) | {"mysql/demo/create_table"}
    covered |= {fill_template(name) for name in demo_templates()}
    missing = [name for name in all_templates() if name not in covered]
    assert not missing, f"templates no test renders (add a golden case or a RENDER_CASES entry): {missing}"
    unknown = sorted(set(RENDER_CASES) - set(all_templates()))
    assert not unknown, f"RENDER_CASES names templates that do not exist: {unknown}"


def test_macro_libraries_are_imported_by_some_template() -> None:
    sources = "\n".join(p.read_text(encoding="utf-8") for p in TEMPLATE_DIR.rglob("*.sql.j2"))
    for path in TEMPLATE_DIR.rglob("_*.sql.j2"):
        name = path.relative_to(TEMPLATE_DIR).as_posix()
        assert f'import "{name}"' in sources, f"{name} is imported by no template"


@pytest.mark.parametrize("name", sorted(RENDER_CASES))
def test_template_renders_with_the_binds_its_caller_passes(name: str) -> None:
    context, binds = RENDER_CASES[name]
    statement = render(name, **context())
    assert statement.binds == binds
    statement.to_dbapi({b: None for b in binds})  # the two-way check the driver call performs
    assert statement.text.strip(), f"{name} rendered empty"
    assert statement.text == statement.text.lstrip(), f"{name}: leading blank space before the SQL"


def _plain_strings(context: dict[str, Any]) -> dict[str, Any]:
    """The context with every Ident (alone or in a tuple) replaced by an equal plain str."""
    out = {}
    for key, value in context.items():
        if isinstance(value, Ident):
            out[key] = str(value)
        elif isinstance(value, tuple) and value and all(isinstance(v, Ident) for v in value):
            out[key] = tuple(str(v) for v in value)
        else:
            out[key] = value
    return out


def _has_ident(context: dict[str, Any]) -> bool:
    return any(type(a) is not type(b) or a is not b for a, b in
               zip(context.values(), _plain_strings(context).values()))


IDENT_CASES = sorted(n for n, (context, _) in RENDER_CASES.items() if _has_ident(context()))


@pytest.mark.parametrize("name", IDENT_CASES)
def test_template_refuses_plain_string_identifiers(name: str) -> None:
    """Every Ident of the context passed as a plain str instead: the render must fail, not print it."""
    from etl.errors import RenderError

    with pytest.raises(RenderError, match="unchecked identifier"):
        render(name, **_plain_strings(RENDER_CASES[name][0]()))


def test_render_statements_have_no_leading_blank_space() -> None:
    for case in sc.cases():
        assert case.statement.text == case.statement.text.lstrip(), case.id


# ---- demo source templates (etl/demo.py): DDL from the fact sheet, one INSERT ... SELECT per table

DEMO_POOL = {"seed", "upper", "span", "rows"}


@pytest.mark.parametrize("table", sorted(sc.demo_facts()))
def test_demo_create_table_renders_every_fact_sheet_column(table: str) -> None:
    demo_table = demo_templates()[table]
    statement = render("mysql/demo/create_table", table=demo_table)
    assert statement.binds == frozenset()
    text = statement.text
    assert text.startswith(f"CREATE TABLE `{table}` (")
    for column in sc.demo_facts()[table]["columns"]:
        assert f"`{column['name']}` {column['type']}" in text
    assert f"ENGINE={sc.demo_facts()[table]['engine']}" in text


@pytest.mark.parametrize("table", sorted(sc.demo_facts()))
def test_demo_fill_binds_are_all_supplied_by_build_demo_source(table: str) -> None:
    """demo._run passes only binds found in its pool: seed, upper, span, rows and n_<table> counts."""
    from etl import demo

    fks = {c: Ident(t) for c, t in demo.foreign_keys().items() if t != table}
    statement = render(fill_template(table), table=demo_templates()[table], seq_table=Ident("seq_1_to_10"),
                       fail=demo._fail, fks=fks)
    pool = DEMO_POOL | {f"n_{name}" for name in demo.clinic_tables()}
    assert statement.binds <= pool, sorted(statement.binds - pool)
    assert f"`{table}`" in statement.text and "`seq_1_to_10`" in statement.text


def test_template_files_are_utf8_and_end_with_a_newline() -> None:
    for dialect in DIALECTS:
        for path in Path(TEMPLATE_DIR / dialect).rglob("*.sql.j2"):
            text = path.read_text(encoding="utf-8")
            assert text.endswith("\n"), path
