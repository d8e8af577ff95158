"""Alembic environment of the analytics PostgreSQL lineage: the load and transform tracking tables.

Every table of this lineage, and its version table, lives in the raw schema: ETL_RAW_SCHEMA (default
``raw``), or ``config.attributes["raw_schema"]`` when a caller overrides it. Revisions read it back
as ``op.get_context().version_table_schema``.

The URL comes from ``etl.settings`` (ETL_ANALYTICS_URL), never from alembic.ini; connections are
made by ``etl.dialects`` so a failure is reported with the URL masked. A caller that already holds a
connection hands it in as ``config.attributes["connection"]`` and commits it itself.
"""

from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context
from alembic.util import CommandError

from etl.dialects import postgres
from etl.render import Ident
from etl.settings import Settings

config = context.config

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
}
NEVER = "1969-01-01 00:00:00"
NOW = sa.text("CURRENT_TIMESTAMP")


def status_table(metadata: sa.MetaData, name: str, last: str, rows: str, status: str) -> sa.Table:
    return sa.Table(
        name, metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("table_name", sa.String(255), nullable=False, index=True),
        sa.Column(last, sa.DateTime, nullable=False, server_default=NEVER, index=True),
        sa.Column("last_primary_value", sa.String(255), index=True),
        sa.Column("primary_column_name", sa.String(255)),
        sa.Column(rows, sa.BigInteger, server_default="0"),
        sa.Column(status, sa.String(50), server_default="pending"),
        sa.Column("_loaded_at", sa.DateTime, server_default=NOW),
        sa.Column("_created_at", sa.DateTime, server_default=NOW),
        sa.Column("_updated_at", sa.DateTime, server_default=NOW),
        sa.UniqueConstraint("table_name"),
    )


def tracking_metadata(schema: str) -> sa.MetaData:
    """The head state, for `alembic check`; the revisions spell out the same names by hand."""
    metadata = sa.MetaData(schema=schema, naming_convention=NAMING_CONVENTION)
    status_table(metadata, "etl_load_status", "last_loaded", "rows_loaded", "load_status")
    transform = status_table(metadata, "etl_transform_status", "last_transformed", "rows_transformed",
                             "transformation_status")
    transform.append_column(sa.Column("last_load_id", sa.BigInteger))  # 0005: the last load transformed
    sa.Table(
        "etl_run_history", metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
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
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.Index(None, "table_name", "phase", "started_at"),
    )
    sa.Table(
        "etl_load_column_status", metadata,
        sa.Column("table_name", sa.String(255), primary_key=True),
        sa.Column("column_name", sa.String(255), primary_key=True),
        sa.Column("last_value", sa.String(255)),
        sa.Column("_updated_at", sa.DateTime, server_default=NOW),
    )
    sa.Table(  # 0006: keys deleted from raw, for the models built on the table
        "etl_deleted_keys", metadata,
        sa.Column("table_name", sa.String(255), primary_key=True),
        sa.Column("load_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("key_value", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("key_column", sa.String(255), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("deleted_at", sa.DateTime, nullable=False, server_default=NOW),
        sa.Index(None, "table_name", "key_value"),
    )
    return metadata


def run_migrations(connection, schema: str) -> None:
    # `alembic -n postgres upgrade head` on a fresh database: the version table needs its schema.
    if not sa.inspect(connection).has_schema(schema):
        postgres.create_schema(connection, schema)
    metadata = tracking_metadata(schema)

    def include_name(name, type_, parent_names) -> bool:
        """Compare only our schema and tables: raw also holds every loaded OpenDental table."""
        if type_ == "schema":
            return name == schema
        return type_ != "table" or f"{schema}.{name}" in metadata.tables

    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table_schema=schema,
        include_schemas=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise CommandError("offline (--sql) mode is not supported: 0001_tracking_status inspects the live schema")

_schema = str(Ident(config.attributes.get("raw_schema") or Settings.load().raw_schema))
_handed_in = config.attributes.get("connection")
if _handed_in is not None:
    run_migrations(_handed_in, _schema)
else:
    if config.config_file_name:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    from etl.migrate import engine_for

    with engine_for(Settings.load(), "analytics").begin() as _connection:
        run_migrations(_connection, _schema)
