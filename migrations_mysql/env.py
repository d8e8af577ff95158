"""Alembic environment of the replica MySQL lineage: the copy phase's tracking tables.

The URL comes from ``etl.settings`` (ETL_REPLICA_URL), never from alembic.ini, and connections are
made by ``etl.dialects`` so migrations run in the same session setup as the ETL (UTC, utf8mb4) and a
failure is reported with the URL masked. A caller that already holds a connection (``etl migrate``,
tests) hands it in as ``config.attributes["connection"]`` and commits it itself.

``target_metadata`` describes the head state; it gives ``alembic check`` something to compare with
and carries the naming convention the revisions spell out by hand.
"""

from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context
from alembic.util import CommandError
from sqlalchemy.dialects import mysql

config = context.config

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
}
TABLE_OPTIONS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}

target_metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

sa.Table(
    "etl_copy_status", target_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("table_name", sa.String(255), nullable=False, index=True),
    sa.Column("last_copied", mysql.DATETIME, nullable=False, server_default="1969-01-01 00:00:00", index=True),
    sa.Column("last_primary_value", sa.String(255), index=True),
    sa.Column("primary_column_name", sa.String(255)),
    sa.Column("rows_copied", sa.BigInteger, server_default="0"),
    sa.Column("copy_status", sa.String(50), server_default="pending"),
    sa.Column("_created_at", mysql.TIMESTAMP, server_default=sa.text("CURRENT_TIMESTAMP")),
    sa.Column("_updated_at", mysql.TIMESTAMP,
              server_default=sa.text("CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP")),
    sa.UniqueConstraint("table_name"),
    **TABLE_OPTIONS,
)

sa.Table(
    "etl_run_history", target_metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("run_id", sa.String(36), nullable=False, index=True),
    sa.Column("phase", sa.String(20), nullable=False),
    sa.Column("table_name", sa.String(255), nullable=False),
    sa.Column("strategy", sa.String(20)),
    sa.Column("status", sa.String(50), nullable=False),
    sa.Column("primary_column_name", sa.String(255)),
    sa.Column("watermark_before", sa.Text),
    sa.Column("watermark_after", sa.Text),
    sa.Column("rows_read", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_written", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("values_adjusted", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("notes", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("started_at", mysql.DATETIME(fsp=6), nullable=False),
    sa.Column("finished_at", mysql.DATETIME(fsp=6)),
    sa.Index(None, "table_name", "phase", "started_at"),
    **TABLE_OPTIONS,
)

sa.Table(
    "etl_copy_column_status", target_metadata,
    sa.Column("table_name", sa.String(255), primary_key=True),
    sa.Column("column_name", sa.String(255), primary_key=True),
    sa.Column("last_value", sa.String(255)),
    sa.Column("_updated_at", mysql.TIMESTAMP,
              server_default=sa.text("CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP")),
    **TABLE_OPTIONS,
)

sa.Table(
    "etl_copy_rejects", target_metadata,
    sa.Column("table_name", sa.String(255), primary_key=True),
    sa.Column("key_value", sa.String(255), primary_key=True),
    sa.Column("column_name", sa.String(255), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("setting", sa.String(255), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("first_seen", mysql.DATETIME(fsp=6), nullable=False),
    sa.Column("last_tried", mysql.DATETIME(fsp=6), nullable=False),
    sa.Column("moved_at", mysql.DATETIME(fsp=6)),
    **TABLE_OPTIONS,
)


def include_name(name, type_, parent_names) -> bool:
    """Compare only our tables: the replica database also holds every copied OpenDental table."""
    return type_ != "table" or name in target_metadata.tables


def run_migrations(connection) -> None:
    # Alembic creates its version table without an ENGINE clause; pin the session default so that
    # table is InnoDB too when the server (or the caller's session) defaults to MyISAM.
    connection.exec_driver_sql("SET SESSION default_storage_engine = InnoDB")
    context.configure(connection=connection, target_metadata=target_metadata, include_name=include_name)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise CommandError("offline (--sql) mode is not supported: 0001_tracking_status inspects the live schema")

_handed_in = config.attributes.get("connection")
if _handed_in is not None:
    run_migrations(_handed_in)
else:
    if config.config_file_name:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    from etl.migrate import engine_for
    from etl.settings import Settings

    with engine_for(Settings.load(), "replica").begin() as _connection:
        run_migrations(_connection)
