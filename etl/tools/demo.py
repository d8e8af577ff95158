"""A deterministic, OpenDental-like *demo* source database, for trying and testing the ETL.

Everything here is made-up demo data; nothing comes from a real clinic except the shape: the tables of
``etl/tools/demo_tables.yml`` (a vendored copy of the OpenDental fact sheet: 93 tables, 18.8M rows at one real
clinic) are created with their production types, defaults, keys and ``ENGINE=MyISAM``, then each is
filled by one ``INSERT ... SELECT ... FROM seq_1_to_N`` statement (MariaDB's SEQUENCE engine), rendered
from ``sql_templates/mysql/demo/``. The twelve tables of FILL_ORDER (the default demo) have hand-tuned
fills (``fill_<table>``); every other table gets the column-type-driven ``fill_generic`` (``clinic=True``
builds all 93). Every generated value is a function of (seed, row number) through CRC32 arithmetic,
except that timestamps are placed relative to an anchor hour (``as_of``); so two builds with the same
seed in the same hour (or with the same ``as_of``) are identical row for row. ``jobs`` fills tables on
that many connections at once, the biggest first.

The data carries OpenDental's quirks on purpose: ``0001-01-01`` sentinel dates and ``0000-00-00``
zero dates, empty strings next to NULLs, doubles with cents, unsigned tinyints above 127, TIME values
above 24 hours and below zero, multi-kilobyte notes, and thousands of rows sharing one DateTStamp
second (bulk edits). Every row's timestamps lie at least one hour before ``as_of``; business dates and
times (appointments) may lie in the future, as they do in a real schedule.
"""

from __future__ import annotations

import argparse
import functools
import math
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn, Sequence

import pymysql
import yaml
from sqlalchemy.engine import URL

from etl.config import STRATEGIES
from etl.db import execute
from etl.dialects.mysql import connect as mysql_connect
from etl.errors import ConfigError, EtlError, PhaseError, RenderError
from etl.render import Ident, Statement, render
from etl.resources import package_file
from etl.settings import mask_url

DEMO_TABLES_PATH = package_file("demo_tables.yml", "etl.tools")

#: The comment `etl demo-data` gives the databases it creates (sql_templates/mysql/demo/create_database);
#: only a database carrying it is ever dropped without --force.
DEMO_MARKER = "built by etl demo-data: demo data only, safe to drop"

#: Every table gets at least this many rows, so that the quirks pinned to small row numbers exist.
MIN_ROWS = 10
#: Timestamps spread over this many days before the anchor (about three years).
SPAN_DAYS = 1095
#: The SEQUENCE engine's largest practical table; far above scale 1.0 (securitylog: 4.7 million).
MAX_ROWS = 100_000_000

ENGINES = ("MyISAM", "InnoDB")

# What may reach DDL unquoted. Column types as SHOW CREATE TABLE writes them; defaults are SQL
# literals: NULL, a (signed) number, a quoted date/datetime/time or the empty string, current_timestamp().
_TYPE = re.compile(
    r"^(?:(?:tinyint|smallint|mediumint|int|bigint)\([0-9]{1,2}\)(?: unsigned)?"
    r"|(?:var)?char\([0-9]{1,5}\)"
    r"|double|float|date|datetime|timestamp|time"
    r"|tinytext|text|mediumtext|longtext)$"
)
_DEFAULT = re.compile(
    r"^(?:NULL|-?[0-9]{1,20}(?:\.[0-9]{1,10})?|''"
    r"|'[0-9]{4}-[0-9]{2}-[0-9]{2}(?: [0-9]{2}:[0-9]{2}:[0-9]{2})?'"
    r"|'-?[0-9]{2,3}:[0-9]{2}:[0-9]{2}'"
    r"|current_timestamp\(\))$"
)
_COLLATION = re.compile(r"^(utf8mb3|utf8mb4|latin1)_[a-z0-9_]{1,40}$")
_COLUMN_KEYS = {"name", "type", "not_null", "default", "collate", "auto_increment", "on_update_current_timestamp"}
_TABLE_KEYS = {
    "engine", "primary_key", "columns", "estimated_rows", "extraction_strategy",
    "incremental_columns", "primary_incremental_column", "sync_profile",
}

# The default demo: the twelve tables with hand-tuned fills (fill_<table>.sql.j2), referenced tables
# first (the fills only use row counts, but a reader expects it).
FILL_ORDER = (
    "definition", "provider", "recalltype", "procedurecode", "patient", "appointment",
    "procedurelog", "claimproc", "payment", "paysplit", "commlog", "securitylog",
)
#: Tables in the vendored fact sheet (etl/tools/demo_tables.yml); `clinic=True` builds them all.
CLINIC_TABLE_COUNT = 93


@dataclass(frozen=True)
class DemoColumn:
    name: Ident
    type: str
    not_null: bool
    default: str | None
    collate: str | None
    auto_increment: bool
    on_update_current_timestamp: bool

    @property
    def charset(self) -> str | None:
        return self.collate.split("_", 1)[0] if self.collate else None

    @property
    def kind(self) -> str:
        """The family the fill macros use: int, real, string, text, date, datetime, timestamp, time."""
        base = self.type.split("(", 1)[0]
        if base.endswith("int"):
            return "int"
        if base in ("double", "float"):
            return "real"
        if base in ("char", "varchar"):
            return "string"
        if base.endswith("text"):
            return "text"
        return base


@dataclass(frozen=True)
class DemoTable:
    name: Ident
    engine: str
    columns: tuple[DemoColumn, ...]
    primary_key: tuple[Ident, ...]
    estimated_rows: int
    extraction_strategy: str
    incremental_columns: tuple[Ident, ...]
    primary_incremental_column: Ident

    @property
    def column_names(self) -> frozenset[str]:
        return frozenset(c.name for c in self.columns)


def _fail(message: str) -> NoReturn:
    """Called from the fill templates when an expression names a column the table does not have."""
    raise RenderError(message)


def _ident(value: Any, where: str) -> Ident:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a name, got {value!r}")
    try:
        return Ident(value)
    except RenderError:
        raise ConfigError(f"{where}: {value!r} is not a plain identifier") from None


def _parse_column(raw: Any, where: str) -> DemoColumn:
    if not isinstance(raw, dict) or "name" not in raw or "type" not in raw:
        raise ConfigError(f"{where}: a column needs `name` and `type`")
    name = _ident(raw["name"], where)
    where = f"{where} column {name}"
    unknown = set(raw) - _COLUMN_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    col_type, default, collate = raw["type"], raw.get("default"), raw.get("collate")
    if not isinstance(col_type, str) or not _TYPE.match(col_type):
        raise ConfigError(f"{where}: type {col_type!r} is not a MySQL type this demo accepts")
    if default is not None and (not isinstance(default, str) or not _DEFAULT.match(default)):
        raise ConfigError(f"{where}: default {default!r} is not a plain SQL literal")
    if collate is not None and (not isinstance(collate, str) or not _COLLATION.match(collate)):
        raise ConfigError(f"{where}: collation {collate!r} is not a known collation name")
    flags = {}
    for key in ("not_null", "auto_increment", "on_update_current_timestamp"):
        flags[key] = raw.get(key, False)
        if not isinstance(flags[key], bool):
            raise ConfigError(f"{where}: `{key}` must be true or false")
    return DemoColumn(name=name, type=col_type, default=default, collate=collate, **flags)


def _parse_table(name: str, raw: Any, path: Path) -> DemoTable:
    where = f"{path.name}: table {name}"
    table = _ident(name, where)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping")
    unknown = set(raw) - _TABLE_KEYS
    missing = _TABLE_KEYS - {"sync_profile"} - set(raw)
    if unknown or missing:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}, missing key(s) {sorted(missing)}")
    columns = tuple(_parse_column(c, where) for c in raw["columns"] or ())
    names = [c.name for c in columns]
    if not columns or len(set(names)) != len(names):
        raise ConfigError(f"{where}: `columns` must list each column once")

    def existing(key: str, values: Any) -> tuple[Ident, ...]:
        values = values if isinstance(values, list) else [values]
        out = tuple(_ident(v, f"{where} `{key}`") for v in values)
        for v in out:
            if v not in names:
                raise ConfigError(f"{where}: `{key}` names column {v}, which the table does not have")
        return out

    if raw["engine"] not in ENGINES:
        raise ConfigError(f"{where}: engine {raw['engine']!r} is not one of {', '.join(ENGINES)}")
    if raw["extraction_strategy"] not in STRATEGIES:
        raise ConfigError(f"{where}: extraction_strategy must be one of {', '.join(STRATEGIES)}")
    rows = raw["estimated_rows"]
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
        raise ConfigError(f"{where}: estimated_rows must be a whole number >= 0")
    incremental = existing("incremental_columns", raw["incremental_columns"])
    (primary_inc,) = existing("primary_incremental_column", raw["primary_incremental_column"])
    if primary_inc not in incremental:
        raise ConfigError(f"{where}: primary_incremental_column {primary_inc} is not in incremental_columns")
    return DemoTable(
        name=table,
        engine=raw["engine"],
        columns=columns,
        primary_key=existing("primary_key", raw["primary_key"]),
        estimated_rows=rows,
        extraction_strategy=raw["extraction_strategy"],
        incremental_columns=incremental,
        primary_incremental_column=primary_inc,
    )


def load_demo_tables(path: Path = DEMO_TABLES_PATH) -> dict[str, DemoTable]:
    """Parse and validate the vendored extract; ConfigError names the file, table, column and key."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the demo table extract: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("tables"), dict):
        raise ConfigError(f"{path}: expected a top-level `tables:` mapping")
    return {name: _parse_table(name, body, path) for name, body in raw["tables"].items()}


@functools.lru_cache(maxsize=1)
def clinic_tables() -> dict[str, DemoTable]:
    """Every table of the vendored fact sheet, the hand-tuned twelve first (FILL_ORDER), then by name."""
    tables = load_demo_tables()
    missing = [name for name in FILL_ORDER if name not in tables]
    if missing or len(tables) != CLINIC_TABLE_COUNT:
        raise ConfigError(f"{DEMO_TABLES_PATH.name}: expected the {CLINIC_TABLE_COUNT} tables of the fact sheet, "
                          f"including {', '.join(FILL_ORDER)}; found {len(tables)}, missing {missing}")
    order = list(FILL_ORDER) + sorted(set(tables) - set(FILL_ORDER))
    return {name: tables[name] for name in order}


def demo_tables() -> dict[str, DemoTable]:
    """The default demo: the twelve tables with hand-tuned fills."""
    return {name: clinic_tables()[name] for name in FILL_ORDER}


def foreign_keys() -> dict[str, str]:
    """Column name -> the table whose single-column primary key has that name (PatNum -> patient): the
    generic fill points such columns at rows of that table. A name several tables use as their key
    (PatNum: patient, patientnote, famaging) belongs to the biggest of them."""
    owners: dict[str, DemoTable] = {}
    for table in clinic_tables().values():
        if len(table.primary_key) != 1:
            continue
        key = table.primary_key[0]
        best = owners.get(key)
        if best is None or (table.estimated_rows, best.name) > (best.estimated_rows, table.name):
            owners[key] = table
    return {key: table.name for key, table in owners.items()}


def demo_row_counts(scale: float, tables: Sequence[str] | None = None) -> dict[str, int]:
    """Rows per table at `scale` (1.0 = the clinic of the fact sheet; procedurelog 818,050), for `tables`
    (default: the twelve of the default demo).

    Full-table lookups keep at least their real size; every table has at least MIN_ROWS rows.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ConfigError(f"demo-data: scale must be a number above 0, got {scale!r}")
    counts = {}
    for name in (FILL_ORDER if tables is None else tables):
        table = clinic_tables()[name]
        rows = round(table.estimated_rows * scale)
        if table.extraction_strategy == "full_table":
            rows = max(rows, table.estimated_rows)
        counts[name] = max(rows, MIN_ROWS)
        if counts[name] > MAX_ROWS:
            raise ConfigError(f"demo-data: scale {scale} asks for {counts[name]:,} {name} rows (limit {MAX_ROWS:,})")
    return counts


def _anchor(as_of: datetime | None) -> datetime:
    """The latest timestamp any row may carry: one hour before `as_of` (default now), on the hour, UTC."""
    moment = as_of or datetime.now(timezone.utc)
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def _seq_table(rows: int) -> Ident:
    if isinstance(rows, bool) or not isinstance(rows, int) or not 1 <= rows <= MAX_ROWS:
        raise ConfigError(f"demo-data: row count {rows!r} is out of range")
    return Ident(f"seq_1_to_{rows}")


def _run(conn: pymysql.Connection, statement: Statement, pool: Mapping[str, Any] | None = None) -> int:
    """Execute with the binds the statement uses, taken from `pool` (a missing one is an error)."""
    pool = pool or {}
    params = {name: pool[name] for name in statement.binds if name in pool}
    with conn.cursor() as cur:
        execute(cur, statement, params)
        return cur.rowcount


def build_demo_source(
    source_url: URL,
    *,
    scale: float = 0.05,
    seed: int = 42,
    tables: list[str] | None = None,
    clinic: bool = False,
    as_of: datetime | None = None,
    jobs: int = 1,
    on_table: Callable[[str, int, float], None] | None = None,
    force: bool = False,
) -> dict[str, int]:
    """Drop and re-create the database named in `source_url` and fill it with DEMO data.

    **Destructive, but only to its own databases**: a database this function created carries
    DEMO_MARKER as its comment and is dropped and re-created; a missing database is created; an existing
    empty one (no tables) is filled and marked. Any other database (OpenDental's own `opendental`, say) is
    refused with a ConfigError before anything is written, unless ``force=True``. Creates `tables` (default: the twelve demo
    tables; ``clinic=True``: all 93 tables of the fact sheet) from ``etl/tools/demo_tables.yml`` and fills each
    with one INSERT ... SELECT, `jobs` tables at a time on their own connections (the biggest first).
    The rows are a deterministic function of `seed` and the row number; timestamps lie within ~3 years
    before the hour preceding `as_of` (default: now). Returns the rows written per table, in table
    order; `on_table(name, rows, seconds)` is called as each table is done.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConfigError(f"demo-data: seed must be a whole number >= 0, got {seed!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"demo-data: jobs must be a whole number >= 1, got {jobs!r}")
    if not source_url.database:
        raise ConfigError(f"demo-data: the source URL {mask_url(source_url)} names no database")
    if clinic and tables is not None:
        raise ConfigError("demo-data: name tables or ask for the whole clinic, not both")
    database = _ident(source_url.database, "demo-data: the source database name")
    known = clinic_tables()
    wanted = list(known) if clinic else list(FILL_ORDER) if tables is None else list(dict.fromkeys(tables))
    for name in wanted:
        if name not in known:
            raise ConfigError(f"demo-data: {name!r} is not a table of the fact sheet ({DEMO_TABLES_PATH.name})")
    counts = demo_row_counts(scale, wanted)
    # Foreign keys point into every table of the fact sheet, built or not: the counts of all of them.
    pool: dict[str, Any] = {
        "seed": seed,
        "upper": _anchor(as_of).strftime("%Y-%m-%d %H:%M:%S"),
        "span": SPAN_DAYS * 86400,
        **{f"n_{name}": rows for name, rows in demo_row_counts(scale, list(known)).items()},
    }
    fks = foreign_keys()
    fills = {}
    for name in wanted:  # every statement renders before anything is dropped
        table = known[name]
        template = f"mysql/demo/fill_{name}" if name in FILL_ORDER else "mysql/demo/fill_generic"
        fills[name] = render(template, table=table, seq_table=_seq_table(counts[name]), fail=_fail,
                             fks={c: Ident(t) for c, t in fks.items() if t != name})

    admin = mysql_connect(source_url, database=False, role="demo source")
    try:
        with admin.cursor() as cur:
            execute(cur, render("mysql/demo/database_marker"), {"database": str(database)})
            found = cur.fetchone()
        if found is None:
            _run(admin, render("mysql/demo/create_database", database=database))
        elif found[1] == 0 and not force:  # empty: nothing to lose; what it will hold is demo data
            _run(admin, render("mysql/demo/mark_database", database=database))
        else:
            if found[0] != DEMO_MARKER and not force:
                raise ConfigError(
                    f"demo-data: refusing to drop database {str(database)!r} on {mask_url(source_url.set(database=None))}: "
                    f"it holds {found[1]} table(s) and was not created by etl demo-data (set ETL_SOURCE_URL to "
                    f"another database, or pass --force to drop it)")
            _run(admin, render("mysql/demo/drop_database", database=database))
            _run(admin, render("mysql/demo/create_database", database=database))
        admin.select_db(database)
        for name in wanted:
            _run(admin, render("mysql/demo/create_table", table=known[name]))
    finally:
        admin.close()

    local = threading.local()
    connections: list[pymysql.Connection] = []
    lock = threading.Lock()

    def fill(name: str) -> int:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = mysql_connect(source_url, role="demo source")
            with lock:
                connections.append(conn)
            _run(conn, render("mysql/demo/session_fill"))
        started = time.monotonic()
        try:
            rows = _run(conn, fills[name], {**pool, "rows": counts[name]})
        except pymysql.MySQLError as exc:
            raise PhaseError(f"demo-data: filling {name} failed: {exc.args[-1]}") from None
        warnings = conn.show_warnings()
        if warnings:
            shown = "; ".join(str(w[2]) for w in warnings[:3])
            raise PhaseError(f"demo-data: filling {name} raised {len(warnings)} warning(s): {shown}")
        if rows != counts[name]:
            raise PhaseError(f"demo-data: {name}: wrote {rows} rows, expected {counts[name]}")
        conn.commit()
        if on_table is not None:
            on_table(name, rows, time.monotonic() - started)
        return rows

    biggest_first = sorted(wanted, key=lambda n: -counts[n])
    try:
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="demo") as pool_:
            done = dict(zip(biggest_first, pool_.map(fill, biggest_first)))
    finally:
        for conn in connections:
            conn.close()
    return {name: done[name] for name in wanted}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m etl.tools.demo [--scale N] [--seed S] [--fact-sheet | --table T ...] [--jobs N]``; the source URL
    comes from the settings."""
    from etl.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m etl.tools.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.05, help="fraction of the clinic's row counts")
    parser.add_argument("--seed", type=int, default=42)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--fact-sheet", action="store_true", help="all 93 tables of the fact sheet")
    which.add_argument("--table", action="append", dest="tables", help="build only this table (repeatable)")
    parser.add_argument("--jobs", type=int, default=2, help="tables filled at once (default 2)")
    parser.add_argument("--force", action="store_true",
                        help="drop the database even though etl demo-data did not create it")
    args = parser.parse_args(argv)
    try:
        url = Settings.load().source_url
        started = time.monotonic()
        written = build_demo_source(url, scale=args.scale, seed=args.seed, tables=args.tables, clinic=args.fact_sheet,
                                    jobs=args.jobs, force=args.force)
    except EtlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    for name, rows in written.items():
        print(f"{name:<15} {rows:>12,}")
    print(f"demo data in {mask_url(url)}: {sum(written.values()):,} rows in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
