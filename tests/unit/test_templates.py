"""Every template under sql_templates/mysql and sql_templates/postgres is rendered by some test, with the
context its own call site passes.

The recipes' statements are rendered by the phases' recipe functions (the golden-file cases,
tests/snapshot_cases.py); every other runtime statement by its own code against fake connections
(tests/call_sites.py). Recording the renders of both gives every template the context the code really
passes, so no runtime context is typed by hand here. Only the benchmark and demo builders' templates
(tools, not the runtime: ``*/bench/*``, ``mysql/demo/*``) are rendered with contexts written below.
Macro libraries (``_*.sql.j2``) are covered through the templates that import them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import pytest

from etl.render import DIALECTS, TEMPLATE_DIR, Ident, render
from tests import call_sites
from tests import snapshot_cases as sc
from tests.fakes import recording_renders

PATIENT = sc.table_schema("patient")
COLUMNS = PATIENT.columns

Context = Callable[[], dict[str, Any]]

# The tools' templates (etl/tools/bench.py, etl/tools/demo.py): template -> (context factory, binds its call site passes)
TOOL_CASES: dict[str, tuple[Context, set[str]]] = {
    "mysql/bench/history_mark": (dict, set()),
    "mysql/bench/history_rows": (dict, {"after"}),
    "mysql/bench/history_seconds": (dict, {"after", "table"}),
    "postgres/bench/history_seconds": (lambda: dict(schema=Ident("raw")), {"after", "table"}),
    "mysql/bench/create_big_table": (lambda: dict(database=Ident("etlbench_src"), table=Ident("bigdocument")), set()),
    "mysql/bench/big_value_put": (lambda: dict(database=Ident("etlbench_src"), table=Ident("bigdocument")),
                                  {"value", "stamp"}),
    "mysql/bench/count_rows": (lambda: dict(database=Ident("etlbench_base"), table=Ident("patient")), set()),
    "mysql/bench/server_info": (dict, set()),
    "postgres/bench/history_mark": (lambda: dict(schema=Ident("raw")), set()),
    "postgres/bench/history_rows": (lambda: dict(schema=Ident("raw")), {"after"}),
    "postgres/bench/count_rows": (lambda: dict(schema=Ident("raw"), table=Ident("patient")), set()),
    "postgres/bench/server_info": (dict, set()),
    "mysql/bench/pipe_select": (lambda: dict(columns=sc.mapped_schema("patient", "load").columns,
                                             database=Ident("etlbench_src"), table=Ident("patient")), set()),
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
    # ---- the clinic benchmark (etl/tools/bench_clinic.py)
    "mysql/bench_clinic/history_phases": (dict, {"after"}),
    "postgres/bench_clinic/history_phases": (lambda: dict(schema=Ident("raw")), {"after"}),
    "mysql/bench_clinic/session_local_time": (dict, set()),
    "mysql/bench_clinic/server_now": (dict, set()),
    "mysql/bench_clinic/open_writers": (dict, {"moment"}),
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
    "mysql/demo/create_database": (lambda: dict(database=Ident("opendental_demo")), set()),
    "mysql/demo/drop_database": (lambda: dict(database=Ident("opendental_demo")), set()),
    "mysql/demo/session_fill": (dict, set()),
    "mysql/demo/database_marker": (dict, {"database"}),
    "mysql/demo/mark_database": (lambda: dict(database=Ident("opendental_demo")), set()),
}


@lru_cache(maxsize=1)
def runtime_renders() -> dict[str, dict[str, Any]]:
    """Template -> the context of its first render by the runtime's own code (recipes, call sites)."""
    with recording_renders() as seen:
        for driver in call_sites.DRIVERS:
            driver()
    first: dict[str, dict[str, Any]] = {}
    for name, context in [*sc.renders(), *seen]:
        first.setdefault(name, context)
    return first


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
    from etl.tools import demo

    return demo.clinic_tables()


def fill_template(table: str) -> str:
    from etl.tools import demo

    return f"mysql/demo/fill_{table}" if table in demo.FILL_ORDER else "mysql/demo/fill_generic"


def test_every_template_is_rendered_by_some_test() -> None:
    covered = set(runtime_renders()) | set(TOOL_CASES) | {"mysql/demo/create_table"}
    covered |= {fill_template(name) for name in demo_templates()}
    missing = [name for name in all_templates() if name not in covered]
    assert not missing, (f"templates no code path of the tests renders (a recipe example, a driver of "
                         f"tests/call_sites.py, or a tool case here): {missing}")
    unknown = sorted(set(TOOL_CASES) - set(all_templates()))
    assert not unknown, f"TOOL_CASES names templates that do not exist: {unknown}"
    runtime_tools = sorted(n for n in runtime_renders() if "/bench/" in n or "/demo/" in n)
    assert not runtime_tools, f"the runtime renders tool templates: {runtime_tools}"


def test_macro_libraries_are_imported_by_some_template() -> None:
    sources = "\n".join(p.read_text(encoding="utf-8") for p in TEMPLATE_DIR.rglob("*.sql.j2"))
    for path in TEMPLATE_DIR.rglob("_*.sql.j2"):
        name = path.relative_to(TEMPLATE_DIR).as_posix()
        assert f'import "{name}"' in sources, f"{name} is imported by no template"


@pytest.mark.parametrize("name", sorted(TOOL_CASES))
def test_tool_template_renders_with_the_binds_its_caller_passes(name: str) -> None:
    context, binds = TOOL_CASES[name]
    statement = render(name, **context())
    assert statement.binds == binds
    assert statement.text.strip(), f"{name} rendered empty"
    assert statement.text == statement.text.lstrip(), f"{name}: leading blank space before the SQL"


def _plain_strings(value: Any) -> Any:
    """The value with every Ident (alone or in a tuple) replaced by an equal plain str."""
    if isinstance(value, Ident):
        return str(value)
    if isinstance(value, tuple) and value and all(isinstance(v, Ident) for v in value):
        return tuple(str(v) for v in value)
    return value


def _ident_cases() -> list[tuple[str, dict[str, Any]]]:
    contexts = dict(runtime_renders())
    contexts.update({name: context() for name, (context, _) in TOOL_CASES.items()})
    return sorted((name, context) for name, context in contexts.items()
                  if any(_plain_strings(v) is not v for v in context.values()))


@pytest.mark.parametrize("name, context", _ident_cases(), ids=[n for n, _ in _ident_cases()])
def test_template_refuses_plain_string_identifiers(name: str, context: dict[str, Any]) -> None:
    """Every Ident its caller passes, passed as a plain str instead: the render must fail, not print it."""
    from etl.errors import RenderError

    with pytest.raises(RenderError, match="unchecked identifier"):
        render(name, **{k: _plain_strings(v) for k, v in context.items()})


def test_rendered_statements_have_no_leading_blank_space() -> None:
    for name, context in runtime_renders().items():
        text = render(name, **context).text
        assert text == text.lstrip() and text.strip(), name


# ---- demo source templates (etl/tools/demo.py): DDL from the fact sheet, one INSERT ... SELECT per table

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
    from etl.tools import demo

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


def test_demo_marker_is_the_comment_the_demo_databases_get() -> None:
    """etl demo-data recognises its own databases by their comment: both DDL templates must write it."""
    from etl.tools.demo import DEMO_MARKER

    for name in ("mysql/demo/create_database", "mysql/demo/mark_database"):
        sql, _ = render(name, database=Ident("opendental_demo")).to_dbapi({})
        assert f"COMMENT '{DEMO_MARKER}'" in sql
