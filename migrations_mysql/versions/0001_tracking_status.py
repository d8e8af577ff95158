"""etl_copy_status: the copy phase's watermark per table, created or adopted from the old DDL.

Revision ID: 0001_tracking_status
Revises:

The old ETL created this table with hand-written DDL, in several shapes: MyISAM, ``last_copied``
as TIMESTAMP, without ``last_primary_value`` / ``primary_column_name``, without indexes. When the
table exists it is adopted: what is missing is added, the rest converted, and every row kept.

``last_copied`` is DATETIME because "never copied" is 1969-01-01, which TIMESTAMP cannot hold.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001_tracking_status"
down_revision = None
branch_labels = None
depends_on = None

TABLE = "etl_copy_status"
NEVER = "1969-01-01 00:00:00"
UNIQUE = ("uq_etl_copy_status_table_name", "table_name")
INDEXES = [(f"ix_{TABLE}_{column}", column) for column in ("table_name", "last_copied", "last_primary_value")]


def columns() -> list[sa.Column]:
    """Fresh Column objects (a Column belongs to one table, so each use gets its own)."""
    return [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("table_name", sa.String(255), nullable=False),
        sa.Column("last_copied", mysql.DATETIME, nullable=False, server_default=NEVER),
        sa.Column("last_primary_value", sa.String(255), nullable=True),
        sa.Column("primary_column_name", sa.String(255), nullable=True),
        sa.Column("rows_copied", sa.Integer, server_default="0"),
        sa.Column("copy_status", sa.String(50), server_default="pending"),
        sa.Column("_created_at", mysql.TIMESTAMP, server_default=sa.text("CURRENT_TIMESTAMP")),
        sa.Column("_updated_at", mysql.TIMESTAMP,
                  server_default=sa.text("CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP")),
    ]


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table(TABLE):
        adopt()
    else:
        op.create_table(TABLE, *columns(), mysql_engine="InnoDB", mysql_charset="utf8mb4")
        ensure_indexes()


def downgrade() -> None:
    op.drop_table(TABLE)


def adopt() -> None:
    """Bring a table left by the old DDL to the shape above without losing a row.

    Legacy rows may hold zero dates, which a strict sql_mode refuses to carry through the table
    rebuilds below, and TIMESTAMP -> DATETIME converts through the session time zone, which must be
    UTC as in every ETL session. Both are set for these statements only, then restored.
    """
    inspector = sa.inspect(op.get_bind())
    existing = {c["name"]: c for c in inspector.get_columns(TABLE)}
    engine = inspector.get_table_options(TABLE).get("mysql_engine", "")
    op.execute("SET @etl_sql_mode = @@SESSION.sql_mode, @etl_time_zone = @@SESSION.time_zone,"
               " SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION', SESSION time_zone = '+00:00'")
    if engine.upper() != "INNODB":
        op.execute(f"ALTER TABLE {TABLE} ENGINE = InnoDB")
    for column in columns():
        if column.name not in existing:
            op.add_column(TABLE, column)
    if "last_copied" in existing:
        op.alter_column(TABLE, "last_copied", type_=mysql.DATETIME(), existing_type=existing["last_copied"]["type"],
                        nullable=True, server_default=None)
        table = sa.table(TABLE, sa.column("last_copied"))
        # NULL and zero dates meant "never copied": make them the DATETIME floor.
        op.execute(table.update()
                   .where(sa.or_(table.c.last_copied.is_(None), table.c.last_copied < "1000-01-01"))
                   .values(last_copied=NEVER))
        op.alter_column(TABLE, "last_copied", existing_type=mysql.DATETIME(), nullable=False, server_default=NEVER)
    ensure_indexes()
    op.execute("SET SESSION sql_mode = @etl_sql_mode, SESSION time_zone = @etl_time_zone")


def ensure_indexes() -> None:
    ensure_index(*UNIQUE, unique=True)
    for name, column in INDEXES:
        ensure_index(name, column)


def ensure_index(name: str, column: str, unique: bool = False) -> None:
    """Create the index unless it exists; an equivalent legacy index under another name is replaced,
    so that every replica has the same index names and later revisions can refer to them."""
    for index in sa.inspect(op.get_bind()).get_indexes(TABLE):
        if index["column_names"] == [column] and bool(index["unique"]) == unique:
            if index["name"] == name:
                return
            op.drop_index(index["name"], table_name=TABLE)
    if unique:
        op.create_unique_constraint(name, TABLE, [column])
    else:
        op.create_index(name, TABLE, [column])
