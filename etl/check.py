"""`etl check-config`: tables.yml against the live source schema, every problem on its own line."""

from __future__ import annotations

from etl.config import EtlConfig
from etl.dialects import for_url, mysql
from etl.settings import Settings


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
            for key, columns in (("primary_key", table.primary_key), ("incremental_columns", table.incremental_columns)):
                for column in columns:
                    if not schema.has_column(column):
                        problems.append(f"{where}: {key}: column {column!r} does not exist in the source")
            primary = table.primary_incremental_column
            if primary:
                if not schema.has_column(primary):
                    problems.append(f"{where}: primary_incremental_column: column {primary!r} does not exist in the source")
                elif not schema.column(primary).orderable:
                    problems.append(f"{where}: primary_incremental_column: column {primary!r} has type "
                                    f"{schema.column(primary).column_type}; expected an integer, date, datetime or timestamp")
            for column in table.incremental_columns:
                if schema.has_column(column) and not schema.column(column).orderable:
                    problems.append(f"{where}: incremental_columns: column {column!r} has type "
                                    f"{schema.column(column).column_type}, which cannot carry a watermark")
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
