"""etl_load_status and etl_transform_status: watermarks per table, created or adopted from the old DDL.

Revision ID: 0001_tracking_status
Revises:

The old ETL created these tables with hand-written DDL, some without ``last_primary_value`` /
``primary_column_name`` or the indexes. When a table exists it is adopted: what is missing is added
and every row kept. Both tables live in the raw schema (the version table's schema).
"""
import sqlalchemy as sa
from alembic import op

revision = "0001_tracking_status"
down_revision = None
branch_labels = None
depends_on = None

NEVER = "1969-01-01 00:00:00"
NOW = sa.text("CURRENT_TIMESTAMP")
#: table -> (watermark column, row count column, status column)
TABLES = {
    "etl_load_status": ("last_loaded", "rows_loaded", "load_status"),
    "etl_transform_status": ("last_transformed", "rows_transformed", "transformation_status"),
}


def columns(last: str, rows: str, status: str) -> list[sa.Column]:
    """Fresh Column objects (a Column belongs to one table, so each use gets its own)."""
    return [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("table_name", sa.String(255), nullable=False),
        sa.Column(last, sa.DateTime, nullable=False, server_default=NEVER),
        sa.Column("last_primary_value", sa.String(255), nullable=True),
        sa.Column("primary_column_name", sa.String(255), nullable=True),
        sa.Column(rows, sa.Integer, server_default="0"),
        sa.Column(status, sa.String(50), server_default="pending"),
        sa.Column("_loaded_at", sa.DateTime, server_default=NOW),
        sa.Column("_created_at", sa.DateTime, server_default=NOW),
        sa.Column("_updated_at", sa.DateTime, server_default=NOW),
    ]


def schema() -> str:
    return op.get_context().version_table_schema


def upgrade() -> None:
    for table, names in TABLES.items():
        if sa.inspect(op.get_bind()).has_table(table, schema=schema()):
            adopt(table, *names)
        else:
            op.create_table(table, *columns(*names), schema=schema())
        ensure_index(table, f"uq_{table}_table_name", "table_name", unique=True)
        for column in ("table_name", names[0], "last_primary_value"):
            ensure_index(table, f"ix_{table}_{column}", column)


def downgrade() -> None:
    for table in TABLES:
        op.drop_table(table, schema=schema())


def adopt(table: str, last: str, rows: str, status: str) -> None:
    """Add what the old DDL left out; NULL watermarks meant "never", so they become the floor."""
    existing = {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table, schema=schema())}
    for column in columns(last, rows, status):
        if column.name not in existing:
            op.add_column(table, column, schema=schema())
    if last in existing:
        rows_table = sa.table(table, sa.column(last), schema=schema())
        op.execute(rows_table.update().where(rows_table.c[last].is_(None)).values({last: NEVER}))
        op.alter_column(table, last, existing_type=sa.DateTime(), nullable=False, server_default=NEVER,
                        schema=schema())


def ensure_index(table: str, name: str, column: str, unique: bool = False) -> None:
    """Create the index (unique: constraint) unless it exists; an equivalent legacy one under another
    name is replaced, so every database has the same names and later revisions can refer to them."""
    inspector = sa.inspect(op.get_bind())
    constraints = {c["name"] for c in inspector.get_unique_constraints(table, schema=schema())}
    for index in inspector.get_indexes(table, schema=schema()):
        if index["column_names"] == [column] and bool(index["unique"]) == unique:
            if index["name"] == name:
                return
            if index["name"] in constraints:
                op.drop_constraint(index["name"], table, type_="unique", schema=schema())
            else:
                op.drop_index(index["name"], table_name=table, schema=schema())
    if unique:
        op.create_unique_constraint(name, table, [column], schema=schema())
    else:
        op.create_index(name, table, [column], schema=schema())
