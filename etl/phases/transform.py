"""Transform phase: PostgreSQL `raw` -> dbt models, tracked per table in raw.etl_transform_status.

One run, for the selected tables:

1. Read each table's window of loads when the run starts: ``after`` = the last load transformed
   (etl_transform_status.last_load_id), ``through`` = the last run committed that changed the table (the
   largest run-history id of a load of the table, or of a run that deleted keys from it: reconcile and the
   deletedobject feed record those in raw.etl_deleted_keys). Loads and deletes of a table never overlap
   (both hold its load lock) and take increasing ids, so every row with a marker up to ``through`` has
   committed, and a row loaded later gets a larger one.
2. Parse the dbt project (the shipped ``dbt/``, or ETL_DBT_PROJECT_DIR) and find the models that read
   each table's source in the raw schema.
3. Select the models of the tables with rows or deleted keys in their window (``--full``: every model of the tables,
   ``--full-refresh``) together with their descendants, and run ``dbt build`` through dbt's Python
   runner, the windows passed as the var ``etl_load_windows`` (and the watermark rules as
   ``etl_watermark_floor``, etl/watermark.py). Each model reads its window through
   ``etl_incremental_filter`` and records it with the post-hook ``etl_record_transform``, inside the
   model's own transaction; the post-hook ``etl_apply_deletes`` deletes from the model the keys deleted
   from raw in the window.
4. From dbt's results: a table whose model, a descendant or one of their tests failed is ``failed`` and
   gets its start-of-run window back (the next run takes the same loads again); a table with nothing to
   do is ``skipped``; the others stay as the post-hook wrote them (``success``). One run-history row per
   table, phase ``transform``, written through etl/tracking.py.

The runner (etl/runner.py ``transform_step``) holds the phase's lock around all of it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from etl import tracking, watermark
from etl.config import EtlConfig
from etl.db import fetch_one
from etl.dialects import for_url
from etl.errors import ConfigError, PhaseError, first_line
from etl.render import Ident
from etl.resources import DATA_ROOT
from etl.settings import Settings, read_dotenv

log = logging.getLogger("etl.transform")

SHIPPED_PROJECT_DIR = DATA_ROOT / "dbt"
#: One lock for the phase (etl:transform:dbt): descendants of one table's models read other tables too.
LOCK_NAME = "dbt"
#: dbt result statuses that fail a table (models: error; tests: fail, error).
FAILED = {"error", "fail", "runtime error"}


@dataclass
class TableWindow:
    """One table's state when the run starts, and what became of it."""

    table: str
    primary_column: str | None        # tables.yml's primary incremental column
    through: int | None = None        # last load committed
    after: int | None = None          # last load transformed
    stored_value: str | None = None   # last_primary_value at the start
    stored_column: str | None = None  # primary_column_name at the start
    loaded: bool = False              # raw.<table> exists and a load committed
    pending: bool = False             # rows loaded or keys deleted in (after, through]
    models: list[str] = field(default_factory=list)
    status: str = "skipped"
    reason: str | None = None
    error: str | None = None
    rows: int = 0
    value_after: str | None = None
    seconds: float = 0.0
    strategy: str | None = None       # full | incremental; None when skipped


# ---------------------------------------------------------------- the dbt project and its environment

def dbt_project_dir() -> Path:
    """ETL_DBT_PROJECT_DIR (environment, then .env), else the project shipped in dbt/."""
    value = os.environ.get("ETL_DBT_PROJECT_DIR") or read_dotenv(Path.cwd() / ".env").get("ETL_DBT_PROJECT_DIR")
    path = Path(value).expanduser().resolve() if value else SHIPPED_PROJECT_DIR
    if not (path / "dbt_project.yml").is_file():
        raise ConfigError(f"setting ETL_DBT_PROJECT_DIR: {path} is not a dbt project (no dbt_project.yml)")
    return path


def dbt_profiles_args(project_dir: Path) -> list[str]:
    """DBT_PROFILES_DIR when set (dbt reads it), else the project's own profiles.yml, else the shipped one
    (profile `opendental_etl`, reading the ETL's settings)."""
    if os.environ.get("DBT_PROFILES_DIR"):
        return []
    return ["--profiles-dir", str(project_dir if (project_dir / "profiles.yml").is_file() else SHIPPED_PROJECT_DIR)]


def dbt_environment(settings: Settings) -> dict[str, str]:
    """ETL_ANALYTICS_URL in the parts profiles.yml reads (dbt's env_var() cannot parse a URL)."""
    url = settings.analytics_url
    return {
        "ETL_DBT_HOST": url.host or "127.0.0.1",
        "ETL_DBT_PORT": str(url.port or 5432),
        "ETL_DBT_USER": url.username or "postgres",
        "DBT_ENV_SECRET_ETL_DBT_PASSWORD": url.password or "",
        "ETL_DBT_DBNAME": url.database,
        "ETL_RAW_SCHEMA": settings.raw_schema,
    }


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """dbt runs in this process and reads os.environ: set the values for the call, then restore."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _runner(manifest: Any = None):
    try:
        from dbt.cli.main import dbtRunner
    except ImportError:
        raise ConfigError("the transform phase needs dbt: pip install -e '.[dbt]'") from None
    return dbtRunner(manifest=manifest)


def invoke_dbt(settings: Settings, args: Sequence[str], *, project_dir: Path | None = None, manifest: Any = None):
    """Run one dbt command in-process on the project with the ETL's settings; returns dbt's result.

    The project, profiles and color flags are appended unless `args` gives them; dbt itself reads
    DBT_TARGET_PATH / DBT_LOG_PATH (where target/ and logs/ go) and DBT_PROFILES_DIR."""
    args = list(args)
    project_dir = project_dir or dbt_project_dir()
    asks_help = bool({"--help", "-h", "--version"} & set(args))  # dbt's own help: no project options
    if "--project-dir" not in args and not asks_help:
        args += ["--project-dir", str(project_dir)]
    if "--profiles-dir" not in args and not asks_help:
        args += dbt_profiles_args(project_dir)
    if not sys.stdout.isatty() and "--use-colors" not in args:
        args.append("--no-use-colors")
    environment = dbt_environment(settings)
    environment.update(_work_paths(project_dir))
    if not sys.stdout.isatty() and not os.environ.get("DBT_USE_COLORS"):
        environment["DBT_USE_COLORS"] = "false"  # also where a flag after the command is not read
    if not logging.getLogger("etl").isEnabledFor(logging.WARNING) and "--quiet" not in args:
        args.insert(0, "--quiet")  # etl --quiet: dbt's errors only
    with _environment(environment):
        return _runner(manifest).invoke(args)


def _work_paths(project_dir: Path) -> dict[str, str]:
    """The shipped project of an installed package lives in site-packages: dbt's target/ and logs/ go to
    the user's cache instead (unless DBT_TARGET_PATH / DBT_LOG_PATH say where)."""
    from etl.resources import INSTALLED

    if not INSTALLED or project_dir != SHIPPED_PROJECT_DIR:
        return {}
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "opendental-etl" / "dbt"
    wanted = {"DBT_TARGET_PATH": cache / "target", "DBT_LOG_PATH": cache / "logs"}
    return {key: str(path) for key, path in wanted.items() if not os.environ.get(key)}


# ---------------------------------------------------------------- the phase

def transform_tables(settings: Settings, config: EtlConfig, tables: Sequence[str] | None = None, *,
                     full: bool = False, run_id: str | None = None) -> list[TableWindow]:
    """Transform the tables (None: every configured table; []: none); what became of each table."""
    if tables is not None and not tables:
        return []
    selected = [t.name for t in config.select(list(tables) if tables else None)]
    run_id = run_id or str(uuid.uuid4())
    started_at = tracking.utc_now()
    started = time.monotonic()
    project_dir = dbt_project_dir()
    store = tracking.for_phase(settings, "transform")
    target = for_url(settings.analytics_url)

    conn = target.connect(settings.analytics_url)
    try:
        windows = {name: _read_window(conn, store, target, settings.raw_schema, config.tables[name])
                   for name in config.tables}
        conn.rollback()
    finally:
        conn.close()
    todo = [windows[name] for name in selected]
    dbt_vars = {"etl_load_windows": {w.table: {"after": w.after, "through": w.through}
                                     for w in windows.values() if w.loaded}, **watermark.dbt_vars()}

    for w in todo:
        if not w.loaded:
            w.status, w.reason = "skipped", "not loaded yet"
        elif not (full or w.pending):
            w.status, w.reason = "skipped", f"no new loads since load {w.after}"
        else:
            w.status = "run"
    manifest = None
    if any(w.status == "run" for w in todo):
        manifest, parse_error = _parse(settings, project_dir)
        readers = _models_by_table(manifest, settings.raw_schema, set(config.tables)) if manifest else {}
        for w in (w for w in todo if w.status == "run"):
            w.models = sorted(readers.get(w.table, ()))
            if parse_error is not None:
                w.status, w.error = "failed", parse_error
            elif not w.models:
                w.status, w.reason = "skipped", f"no model of {project_dir} reads this table's source"

    chosen = [w for w in todo if w.status == "run"]
    if chosen:
        args = ["build", "--vars", json.dumps(dbt_vars)]
        if full:
            args.append("--full-refresh")
        args += ["--select", *sorted({f"{m}+" for w in chosen for m in w.models})]
        log.info("transform: dbt %s", " ".join("<etl vars>" if a.startswith("{") else a for a in args))
        outcome = invoke_dbt(settings, args, project_dir=project_dir, manifest=manifest)
        _apply_results(chosen, manifest, outcome, settings.raw_schema)

    conn = target.connect(settings.analytics_url)
    try:
        _record(conn, store, todo, run_id=run_id, started_at=started_at, full=full)
        conn.commit()
    finally:
        conn.close()

    for w in todo:  # a skipped table (nothing new) is part of the summary, not a line of its own
        log.log(logging.DEBUG if w.status == "skipped" else logging.INFO, "transform %-16s %-8s %s", w.table,
                w.status, w.reason or (f"{w.rows} rows" if w.status != "failed" else w.error))
    skipped = sum(1 for w in todo if w.status == "skipped")
    log.info("transform: %d tables in %.2fs%s", len(todo), time.monotonic() - started,
             f" ({skipped} with nothing new)" if skipped else "")
    return todo


def _read_window(conn, store: tracking.Store, target, raw_schema: str, table_config) -> TableWindow:
    w = TableWindow(table=table_config.name, primary_column=table_config.primary_incremental_column)
    through, after, value, column, _ = store.transform_state(conn, w.table)
    w.through, w.after, w.stored_value, w.stored_column = through, after, value, column
    w.loaded = through is not None and bool(target.reflect_columns(conn, raw_schema, w.table))
    if w.loaded:
        params = {"through": through, "table_name": w.table} | ({"after": after} if after is not None else {})
        statement = target.render("transform_pending", schema=Ident(raw_schema), table=Ident(w.table),
                                  has_after=after is not None)
        w.pending = bool(fetch_one(conn, statement, params)[0])
    return w


def _parse(settings: Settings, project_dir: Path, *, quiet: bool = False) -> tuple[Any, str | None]:
    """The project's manifest (without the windows, so dbt's partial parsing is kept between runs).
    A project with packages.yml whose packages are not installed yet gets `dbt deps` first. quiet: dbt
    prints errors only (`etl verify --json` keeps stdout for its report)."""
    flags = ["--quiet"] if quiet else []
    wants_packages = any((project_dir / name).is_file() for name in ("packages.yml", "dependencies.yml"))
    if wants_packages and not (project_dir / "dbt_packages").is_dir():
        deps = invoke_dbt(settings, [*flags, "deps"], project_dir=project_dir)
        if not deps.success:
            reason = first_line(deps.exception, lines=3) if deps.exception else "see dbt's output above"
            return None, f"dbt deps failed for {project_dir}: {reason}"
    result = invoke_dbt(settings, [*flags, "parse"], project_dir=project_dir)
    if result.success and result.result is not None:
        return result.result, None
    reason = first_line(result.exception, lines=3) if result.exception else "dbt parse failed (see dbt's output above)"
    return None, f"dbt could not parse {project_dir}: {reason}"


def _models_by_table(manifest, raw_schema: str, configured: set[str]) -> dict[str, set[str]]:
    """table -> the models that read its source in the raw schema directly."""
    readers: dict[str, set[str]] = {}
    for node in manifest.nodes.values():
        if node.resource_type != "model":
            continue
        for parent in node.depends_on.nodes:
            source = manifest.sources.get(parent)
            if source is not None and source.schema == raw_schema and source.identifier in configured:
                readers.setdefault(source.identifier, set()).add(node.name)
    return readers


@dataclass(frozen=True)
class KeyedModel:
    """A model that mirrors the keys of one raw table: where it is, and which column holds raw's key."""

    name: str
    schema: str
    relation: str
    table: str
    raw_key: str
    model_key: str
    applies_deletes: bool


#: The post-hook a model applies its table's deletes with, and the key mapping it names.
_APPLY_DELETES = re.compile(r"etl_apply_deletes\(\s*['\"](\w+)['\"]\s*,\s*\{\s*['\"](\w+)['\"]\s*:\s*['\"](\w+)['\"]\s*\}")


def keyed_models(manifest, raw_schema: str, tables: dict[str, Sequence[str]]) -> dict[str, list[KeyedModel]]:
    """table -> the models whose rows are the table's rows by key (`tables`: table -> its primary key):
    a model that applies the table's deletes (its etl_apply_deletes hook names the key columns), or a
    model that reads only that table's source and whose unique_key is the table's single key column (its
    raw name or the staging macro's snake_case one). `etl verify` compares their keys with raw's."""
    from etl.dbt_sources import snake_case

    readers = _models_by_table(manifest, raw_schema, set(tables))
    found: dict[str, list[KeyedModel]] = {}
    for node in manifest.nodes.values():
        if node.resource_type != "model" or node.config.materialized == "ephemeral":
            continue
        read = {t for t, names in readers.items() if node.name in names}
        hooks = " ".join(getattr(h, "sql", "") or "" for h in node.config.post_hook or ())
        mapping = {m.group(1): (m.group(2), m.group(3)) for m in _APPLY_DELETES.finditer(hooks)}
        for table in sorted(read):
            key = tables[table]
            if table in mapping:
                raw_key, model_key = mapping[table]
            elif len(read) == 1 and len(key) == 1 and node.config.get("unique_key") in (key[0], snake_case(key[0])):
                raw_key, model_key = key[0], node.config.get("unique_key")
            else:
                continue
            found.setdefault(table, []).append(KeyedModel(
                name=node.name, schema=node.schema, relation=node.alias or node.name, table=table,
                raw_key=raw_key, model_key=model_key, applies_deletes=table in mapping))
    return found


def parsed_project(settings: Settings) -> tuple[Any, str | None]:
    """The manifest of the project `etl transform` runs, or None and why; dbt prints errors only."""
    return _parse(settings, dbt_project_dir(), quiet=True)


def _ancestor_tables(manifest, raw_schema: str) -> dict[str, set[str]]:
    """node id -> the raw tables it reads, directly or through other nodes."""
    memo: dict[str, set[str]] = {}

    def tables_of(node_id: str, seen: frozenset = frozenset()) -> set[str]:
        if node_id in memo:
            return memo[node_id]
        source = manifest.sources.get(node_id)
        if source is not None:
            return {source.identifier} if source.schema == raw_schema else set()
        node = manifest.nodes.get(node_id)
        if node is None or node_id in seen:
            return set()
        found: set[str] = set()
        for parent in node.depends_on.nodes:
            found |= tables_of(parent, seen | {node_id})
        memo[node_id] = found
        return found

    return {node_id: tables_of(node_id) for node_id in manifest.nodes}


def _apply_results(chosen: list[TableWindow], manifest, outcome, raw_schema: str) -> None:
    """Each chosen table's status from dbt's own results."""
    results = list(getattr(outcome.result, "results", None) or [])
    if not results:
        reason = first_line(outcome.exception, lines=3) if outcome.exception else "dbt build returned no results"
        for w in chosen:
            w.status, w.error = "failed", f"dbt build failed: {reason}"
        return
    ancestors = _ancestor_tables(manifest, raw_schema)
    by_name = {r.node.name: r for r in results}
    for w in chosen:
        related = [r for r in results if w.table in ancestors.get(r.node.unique_id, ())]
        bad = [r for r in related if str(r.status) in FAILED]
        own = [by_name.get(m) for m in w.models]
        w.seconds = sum(r.execution_time or 0.0 for r in own if r is not None)
        if bad:
            w.status = "failed"
            w.error = "; ".join(f"{r.node.resource_type} {r.node.name}: {first_line(r.message, lines=3)}" for r in bad)[:4000]
        elif any(r is None for r in own):
            w.status, w.error = "failed", "dbt reported no result for " + ", ".join(
                m for m, r in zip(w.models, own) if r is None)
        elif all(str(r.status) == "success" for r in own):
            w.status = "success"
        else:
            w.status = "skipped"
            w.reason = "dbt skipped " + ", ".join(f"{r.node.name} ({r.status})" for r in own)


def _record(conn, store: tracking.Store, todo: list[TableWindow], *, run_id: str, started_at: dt.datetime,
            full: bool) -> None:
    """Status rows of failed and skipped tables, and one run-history row per table, in one transaction."""
    for w in todo:
        if w.status == "success":
            row = store.transform_recorded(conn, w.table)
            if row is None or row[0] != "success" or row[4] != w.through:
                w.status = "failed"
                w.error = (f"{', '.join(w.models)} ran but recorded no transform of load {w.through}: "
                           f"add the post-hook etl_record_transform('{w.table}')")
            else:
                w.value_after, w.rows = row[1], int(row[3] or 0)
        if w.status != "success":
            store.mark_transform(conn, w.table, status=w.status,
                                 primary_column_name=w.stored_column if w.stored_column is not None else w.primary_column,
                                 last_primary_value=w.stored_value, last_load_id=w.after)
            w.rows, w.value_after = 0, w.stored_value
        w.strategy = None if w.status == "skipped" else ("full" if full or w.after is None else "incremental")
        notes = [f"load window ({w.after}, {w.through}]" if not full else f"full refresh through load {w.through}"]
        if w.models:
            notes.append("models: " + ", ".join(w.models))
        if w.reason:
            notes.append(w.reason)
        store.write_history(conn, tracking.History(
            run_id=run_id, phase="transform", table=w.table, started_at=started_at, status=w.status,
            strategy=w.strategy, primary_column_name=w.primary_column, watermark_before=w.stored_value,
            watermark_after=w.value_after, rows_read=w.rows, rows_written=w.rows, notes="; ".join(notes),
            error=w.error))


def dbt_command(settings: Settings, args: Sequence[str]) -> int:
    """`etl dbt ARGS...`: any dbt command on the project with the ETL's settings (e.g. source freshness)."""
    args = list(args)
    if args[:1] == ["--"]:  # `etl dbt -- --help`: everything after -- is dbt's
        args = args[1:]
    if not args:
        raise PhaseError("etl dbt: name a dbt command, e.g. `etl dbt source freshness`")
    result = invoke_dbt(settings, args)
    if result.exception is not None:
        log.error("dbt: %s", first_line(result.exception, lines=3))
    return 0 if result.success else 1
