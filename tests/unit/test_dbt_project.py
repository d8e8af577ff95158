"""The dbt project of the transform phase, without a database or dbt: the generated sources file is in sync
with tables.yml and the demo catalog, and the macros render as intended under plain Jinja (with small stand-ins
for dbt's `return`, `adapter`, `is_incremental` and `exceptions`)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import jinja2
import pytest
import yaml

from etl import PROJECT_ROOT
from etl.config import load_config
from etl.config import EtlConfig
from etl.dbt_sources import HEADER, SOURCES_PATH, render_sources
from etl.dialects.postgres import PgColumn
from etl.tools.demo import DemoColumn, demo_tables, load_demo_tables

DBT = PROJECT_ROOT / "dbt"
MACRO_FILES = sorted((DBT / "etl_tracking" / "macros").glob("*.sql")) + sorted((DBT / "macros").glob("*.sql"))


_BASE_TYPE = re.compile(r"^([a-z]+)(?:\((\d+)(?:,(\d+))?\))?( unsigned)?$")


def pg_column_type(column: DemoColumn) -> str:
    """The PostgreSQL type the load gives a demo catalog column (through the type map of
    etl/dialects/postgres.py), without a database."""
    m = _BASE_TYPE.match(column.type)
    assert m, f"column {column.name}: unexpected type {column.type!r}"
    base, size, scale, _unsigned = m.groups()
    is_char = base in ("char", "varchar")
    return PgColumn(
        name=column.name, data_type=base, column_type=column.type, nullable=not column.not_null,
        default=None, extra="", charset=None, collation=None,
        precision=int(size) if size and not is_char else None, scale=int(scale) if scale else None,
        char_length=int(size) if size and is_char else None,
    ).pg_type


def catalog_columns(config: EtlConfig) -> dict[str, list[tuple[str, str]]]:
    """Offline stand-in for etl.dbt_sources.live_columns: the demo catalog (the source `etl demo-data`
    builds) through the type map."""
    catalog = load_demo_tables()
    return {name: [(c.name, pg_column_type(c)) for c in catalog[name].columns]
            for name in config.tables if name in catalog}


def collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# ---------------------------------------------------------------- generated sources

def test_sources_file_is_generated_from_tables_yml_and_in_sync() -> None:
    committed = SOURCES_PATH.read_text(encoding="utf-8")
    assert committed.startswith(HEADER)
    config = load_config(PROJECT_ROOT / "tables.yml")
    assert committed == render_sources(config, catalog_columns(config)), \
        "dbt/models/staging/_sources.yml is stale: run `etl dbt-sources`"


def test_sources_list_every_configured_table_with_its_real_columns() -> None:
    document = yaml.safe_load(SOURCES_PATH.read_text(encoding="utf-8"))
    sources = {s["name"]: s for s in document["sources"]}
    raw = {t["name"]: t for t in sources["opendental"]["tables"]}
    assert set(raw) == set(load_config(PROJECT_ROOT / "tables.yml").tables)
    catalog = load_demo_tables()
    for name, table in raw.items():
        columns = [c["name"] for c in table["columns"]]
        assert columns == [c.name for c in catalog[name].columns] + ["_etl_load_id", "_etl_loaded_at"], name
    patient = {c["name"]: c["data_type"] for c in raw["patient"]["columns"]}
    assert patient["PatNum"] == "bigint" and patient["PatStatus"] == "smallint"           # tinyint unsigned
    assert patient["SchedBeforeTime"] == "interval" and patient["LName"] == "varchar(100)"  # MySQL TIME
    assert sources["opendental"]["loaded_at_field"].startswith("_etl_loaded_at")
    assert sources["opendental"]["freshness"]["error_after"] == {"count": 72, "period": "hour"}
    assert set(t["name"] for t in sources["etl"]["tables"]) == {
        "etl_load_status", "etl_transform_status", "etl_run_history", "etl_load_column_status", "etl_deleted_keys"}


def test_every_demo_table_has_a_staging_model_with_key_tests() -> None:
    models = yaml.safe_load((DBT / "models" / "staging" / "_staging.yml").read_text(encoding="utf-8"))["models"]
    tested = {m["name"]: [c for c in m["columns"] if c.get("data_tests")] for m in models}
    for name in demo_tables():
        assert (DBT / "models" / "staging" / f"stg_{name}.sql").is_file(), name
        key_tests = tested[f"stg_{name}"]
        assert len(key_tests) == 1 and key_tests[0]["data_tests"] == ["unique", "not_null"], name


def test_every_boolean_flag_a_model_lists_is_an_integer_column_of_its_table() -> None:
    catalog = load_demo_tables()
    for path in sorted((DBT / "models" / "staging").glob("stg_*.sql")):
        table = catalog[path.stem[len("stg_"):]]
        listed = re.search(r"booleans=\[(.*?)\]", path.read_text(encoding="utf-8"), re.S)
        assert listed is not None, path.name
        columns = {c.name: c.type for c in table.columns}
        for flag in re.findall(r"'([^']+)'", listed.group(1)):
            assert flag in columns, f"{path.name}: booleans: {table.name} has no column {flag}"
            assert "int(" in columns[flag], f"{path.name}: booleans: {flag} is {columns[flag]}"


# ---------------------------------------------------------------- macros under plain Jinja

class _Return(Exception):
    def __init__(self, value):
        self.value = value


class _CompileError(Exception):
    pass


def _raise_return(value):
    raise _Return(value)


def _raise_compiler_error(message):
    raise _CompileError(message)


class Macros:
    """All macro files as one template module; `call` runs a macro the way dbt does (return() -> value)."""

    def __init__(self, *, incremental: bool = True, window=None, variables=None):
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, extensions=["jinja2.ext.do"])
        source = "\n".join(p.read_text(encoding="utf-8") for p in MACRO_FILES)
        variables = variables or {}

        def dispatch(name, namespace=None):
            return getattr(self.module, f"default__{name}")

        context = {
            "modules": SimpleNamespace(re=re, datetime=__import__("datetime")),
            "return": _raise_return,
            "exceptions": SimpleNamespace(raise_compiler_error=_raise_compiler_error),
            "adapter": SimpleNamespace(dispatch=dispatch, quote=lambda name: f'"{name}"'),
            "is_incremental": lambda: incremental,
            "execute": True,
            "var": lambda name, default=None: variables.get(name, default),
            "env_var": lambda name, default=None: default,
            "model": SimpleNamespace(name="stg_patient"),
        }
        self.module = env.from_string(source).make_module(context)

    def call(self, name: str, *args, **kwargs):
        """Like dbt's macro runner, every macro call (nested ones too) ends at its own return()."""
        original = jinja2.runtime.Macro._invoke

        def invoke(macro, arguments, autoescape):
            try:
                return original(macro, arguments, autoescape)
            except _Return as returned:
                return returned.value

        jinja2.runtime.Macro._invoke = invoke
        try:
            value = getattr(self.module, name)(*args, **kwargs)
        finally:
            jinja2.runtime.Macro._invoke = original
        return str(value) if isinstance(value, jinja2.runtime.Markup) else value


@pytest.mark.parametrize("name, expected", [
    ("DateTStamp", "date_t_stamp"), ("PatNum", "pat_num"), ("DEANum", "dea_num"), ("IsCDAnet", "is_cd_anet"),
    ("Bal_0_30", "bal_0_30"), ("BalOver90", "bal_over90"), ("Mode_", "mode"), ("SSN", "ssn"), ("FKey", "f_key"),
    ("CodeMod1", "code_mod1"), ("SecDateTEdit", "sec_date_t_edit"), ("NationalProvID", "national_prov_id"),
])
def test_snake_case(name: str, expected: str) -> None:
    assert Macros().call("opendental_snake_case", name) == expected


def test_snake_case_gives_distinct_names_to_every_demo_column() -> None:
    macros = Macros()
    for table in load_demo_tables().values():
        names = [macros.call("opendental_snake_case", c.name) for c in table.columns]
        assert len(set(names)) == len(names), table.name
        assert all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in names), names


def test_incremental_filter_takes_the_loads_after_the_last_transformed_through_the_last_committed() -> None:
    macros = Macros(variables={"etl_load_windows": {"patient": {"after": 12, "through": 15}}})
    text = collapse(macros.call("etl_incremental_filter", "patient"))
    assert text == '/* etl_load_window(patient) after=12 through=15 */ ("_etl_load_id" > 12 and "_etl_load_id" <= 15)'
    assert macros.call("default__etl_read_window_marker", "patient", "select 1 where " + text) == {"after": 12, "through": 15}
    assert macros.call("default__etl_read_window_marker", "patients", "select 1 where " + text) is None


def test_incremental_filter_on_a_first_build_or_full_refresh_keeps_the_upper_bound() -> None:
    macros = Macros(incremental=False, variables={"etl_load_windows": {"patient": {"after": 12, "through": 15}}})
    text = collapse(macros.call("etl_incremental_filter", "patient", "p"))
    assert text == '/* etl_load_window(patient) after=none through=15 */ ("p"."_etl_load_id" <= 15)'
    assert macros.call("default__etl_read_window_marker", "patient", text) == {"after": None, "through": 15}


def test_incremental_filter_before_any_load_reads_nothing() -> None:
    macros = Macros(variables={"etl_load_windows": {"patient": {"after": None, "through": None}}})
    assert collapse(macros.call("etl_incremental_filter", "patient")) == \
        "/* etl_load_window(patient) after=none through=none */ (false)"


def test_a_table_name_that_is_not_plain_is_a_compile_error() -> None:
    with pytest.raises(_CompileError, match="source_table must be a plain table or column name"):
        Macros().call("etl_incremental_filter", "patient; drop table x")


@pytest.mark.parametrize("dtype, text, usable", [
    ("bigint", "cast(v as text)", "v is not null"),
    ("date", "to_char(v, 'YYYY-MM-DD')", "v >= date '1901-01-01'"),
    ("timestamp without time zone",
     "(select to_char(v, 'YYYY-MM-DD HH24:MI:SS') || case when v <> date_trunc('second', v) then to_char(v, '.US') "
     "else '' end from (select v as v) as w)", "v >= date '1901-01-01'"),
])
def test_watermark_text_and_usable_follow_the_load_phase(dtype: str, text: str, usable: str) -> None:
    macros = Macros()
    assert collapse(macros.call("default__etl_watermark_text", "v", dtype)) == text
    assert collapse(macros.call("default__etl_watermark_usable", "v", dtype)) == usable


def test_a_text_column_cannot_carry_a_watermark() -> None:
    with pytest.raises(_CompileError, match="a column of type text cannot carry a watermark"):
        Macros().call("default__etl_watermark_text", "v", "text")


def test_the_watermark_floor_is_the_etl_s_own_rule() -> None:
    """etl transform passes etl/watermark.py's floor; the package's default (a plain `dbt run`) is the same."""
    from etl import watermark

    assert watermark.dbt_vars() == {"etl_watermark_floor": watermark.FLOOR.isoformat()}
    assert Macros().call("default__etl_watermark_floor") == watermark.FLOOR.isoformat()
    later = Macros(variables={"etl_watermark_floor": "1950-01-01"})
    assert collapse(later.call("default__etl_watermark_usable", "v", "date")) == "v >= date '1950-01-01'"
    with pytest.raises(_CompileError, match="etl_watermark_floor must be a date"):
        Macros(variables={"etl_watermark_floor": "1901-01-01' or true --"}).call("default__etl_watermark_floor")


# ---------------------------------------------------------------- generated staging models (etl dbt-sources)

def test_python_snake_case_is_the_macros_for_every_fact_sheet_column() -> None:
    from etl.dbt_sources import snake_case

    macros = Macros()
    for table in load_demo_tables().values():
        for column in table.columns:
            assert snake_case(column.name) == macros.call("opendental_snake_case", column.name), column.name


def _config(tmp_path, tables: dict):
    from etl.config import parse_config

    return parse_config({"tables": tables}, tmp_path / "tables.yml")


def test_generated_models_skip_hand_written_ones_and_test_every_key(tmp_path) -> None:
    import shutil

    from etl.dbt_sources import GENERATED_DIR, MODEL_HEADER, MODEL_YAML_HEADER, plan_files

    project = tmp_path / "dbt"
    shutil.copytree(DBT / "models", project / "models", ignore=shutil.ignore_patterns("generated"))
    config = _config(tmp_path, {
        "patient": {"primary_key": "PatNum", "primary_incremental_column": "DateTStamp"},
        "zipcode": {"primary_key": "ZipCodeNum", "extraction_strategy": "full_table"},
        "treatplanlink": {"primary_key": ["TreatPlanNum", "ProcNum"], "extraction_strategy": "full_table"},
    })
    wanted, leftovers = plan_files(config, project, {"patient": [("PatNum", "bigint")]})
    folder = project / GENERATED_DIR
    assert sorted(p.relative_to(project).as_posix() for p in wanted) == [
        "models/staging/_sources.yml", "models/staging/generated/_generated.yml",
        "models/staging/generated/stg_treatplanlink.sql", "models/staging/generated/stg_zipcode.sql"]
    zipcode = wanted[folder / "stg_zipcode.sql"]
    assert zipcode.startswith(MODEL_HEADER)
    assert "unique_key='zip_code_num'" in zipcode and "etl_record_transform('zipcode')" in zipcode
    assert "opendental_staging_columns(source('opendental', 'zipcode'))" in zipcode
    assert "etl_incremental_filter('zipcode')" in zipcode
    link = wanted[folder / "stg_treatplanlink.sql"]
    assert "unique_key=['treat_plan_num', 'proc_num']" in link
    tests = yaml.safe_load(wanted[folder / "_generated.yml"])
    assert wanted[folder / "_generated.yml"].startswith(MODEL_YAML_HEADER)
    by_model = {m["name"]: {c["name"]: c.get("data_tests") for c in m["columns"]} for m in tests["models"]}
    assert by_model["stg_zipcode"]["zip_code_num"] == ["unique", "not_null"]
    assert by_model["stg_treatplanlink"] == {"treat_plan_num": ["not_null"], "proc_num": ["not_null"],
                                             "_etl_load_id": None}
    # the hand-written models of the demo tables not configured here keep their sources declared
    sources = yaml.safe_load(wanted[project / "models" / "staging" / "_sources.yml"])["sources"][0]["tables"]
    declared = {t["name"]: t for t in sources}
    assert set(declared) == {"patient", "zipcode", "treatplanlink"} | (set(demo_tables()) - {"patient"})
    assert declared["commlog"]["freshness"] is None and "stg_commlog.sql reads it" in declared["commlog"]["description"]
    assert [c["name"] for c in declared["patient"]["columns"]] == ["PatNum", "_etl_load_id", "_etl_loaded_at"]
    assert leftovers == []

    folder.mkdir(parents=True)
    (folder / "stg_gone.sql").write_text(MODEL_HEADER + "select 1\n")
    (folder / "mine.sql").write_text("select 2\n")
    _, leftovers = plan_files(config, project, {})
    assert leftovers == [folder / "stg_gone.sql"]  # never a file without the generated header
