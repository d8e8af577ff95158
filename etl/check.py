"""tables.yml against the live schema.

`etl check-config` reports every problem it finds (:func:`check_config`). Every command that moves or
compares data (copy, load, run, verify, reconcile) first runs :func:`check_columns` on the tables it was
asked for: a configured column (primary_key, incremental_columns, primary_incremental_column) that the
live table lacks, or a watermark column of a type that cannot carry one, stops the command with exit 2
before any data moves -- no replica or raw table is created or changed. Without it a misspelt incremental
column was skipped with a warning and the table read on the remaining ones, exit 0. A table that has run
before (it has a tracking row) and lost a configured column at the source is recorded `failed`, with the
error in its run history (the runner does that), so `etl status` never keeps showing its last success; a
new or misspelt entry leaves the tracking untouched.
"""

from __future__ import annotations

from typing import Iterable

from etl.config import EtlConfig, TableConfig
from etl.dialects import for_url, mysql
from etl.errors import ConfigError
from etl.schema import TableSchema
from etl.settings import Settings


def column_problems(where: str, table: TableConfig, schema: TableSchema, side: str = "source") -> list[str]:
    """The configured columns of `table` against its live definition, one line per problem."""
    problems: list[str] = []
    for key, columns in (("primary_key", table.primary_key), ("incremental_columns", table.incremental_columns)):
        for column in columns:
            if not schema.has_column(column):
                problems.append(f"{where}: {key}: column {column!r} does not exist in the {side}")
    primary = table.primary_incremental_column
    if primary:
        if not schema.has_column(primary):
            problems.append(f"{where}: primary_incremental_column: column {primary!r} does not exist in the {side}")
        elif not schema.column(primary).orderable:
            problems.append(f"{where}: primary_incremental_column: column {primary!r} has type "
                            f"{schema.column(primary).column_type}; expected an integer, date, datetime or timestamp")
    for column in table.incremental_columns:
        if schema.has_column(column) and not schema.column(column).orderable:
            problems.append(f"{where}: incremental_columns: column {column!r} has type "
                            f"{schema.column(column).column_type}, which cannot carry a watermark")
    return problems


def check_columns(settings: Settings, config: EtlConfig, tables: Iterable[TableConfig], *,
                  against: str = "source") -> None:
    """Raise ConfigError (exit 2) naming every configured column the live tables lack; nothing is written."""
    problems = column_problems_by_table(settings, config, tables, against=against)
    if problems:
        raise ConfigError("\n".join(line for lines in problems.values() for line in lines))


def column_problems_by_table(settings: Settings, config: EtlConfig, tables: Iterable[TableConfig], *,
                             against: str = "source") -> dict[str, list[str]]:
    """Table -> the problems of its configured columns against the live table (tables without any absent).

    `against`: "source" (copy, run, verify, reconcile) or "replica" (a load alone reads the replica, and
    its source may be out of reach). A table missing there is left to the phase, which fails that table
    alone and records it. Three short information_schema reads per table."""
    url = settings.source_url if against == "source" else settings.replica_url
    conn = mysql.connect(url, role=against)
    problems: dict[str, list[str]] = {}
    try:
        for table in tables:
            schema = mysql.reflect_table(conn, url.database, table.name)
            if schema is not None:
                found = column_problems(f"{config.path}: table {table.name!r}", table, schema, against)
                if found:
                    problems[table.name] = found
        conn.commit()
    finally:
        conn.close()
    return problems


def check_config(settings: Settings, config: EtlConfig) -> list[str]:
    problems: list[str] = []
    database = settings.source_url.database
    target = for_url(settings.analytics_url)
    conn = mysql.connect(settings.source_url, role="source")
    try:
        for table in config.tables.values():
            where = f"{config.path}: table {table.name!r}"
            schema = mysql.reflect_table(conn, database, table.name)
            if schema is None:
                problems.append(f"{where}: does not exist in the source database {database}")
                continue
            problems += column_problems(where, table, schema)
            if not table.is_full_table and not schema.primary_key:
                problems.append(f"{where}: an incremental table needs a primary key; the source table has none")
            elif schema.primary_key and tuple(schema.primary_key) != tuple(table.primary_key):
                problems.append(f"{where}: primary_key: configured {list(table.primary_key)} but the source key is "
                                f"{list(schema.primary_key)}")
            for column in schema.columns:
                if target.copy_kind(column) == "unsupported":
                    problems.append(f"{where}: column {column.name!r} has type {column.column_type}, which the load "
                                    "phase cannot map")
    finally:
        conn.close()
    return problems
