"""etl_load_column_status: one watermark per column for the OR-fallback strategy.

Revision ID: 0003_column_status
Revises: 0002_run_history

A table without one reliable change column is loaded with ``col_a >= :a OR col_b >= :b``; each
column keeps its own high-water mark here, keyed by (table_name, column_name).
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_column_status"
down_revision = "0002_run_history"
branch_labels = None
depends_on = None

TABLE = "etl_load_column_status"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("table_name", sa.String(255), nullable=False),
        sa.Column("column_name", sa.String(255), nullable=False),
        sa.Column("last_value", sa.String(255), nullable=True),
        sa.Column("_updated_at", sa.DateTime, server_default=sa.text("CURRENT_TIMESTAMP")),
        sa.PrimaryKeyConstraint("table_name", "column_name"),
        schema=op.get_context().version_table_schema,
    )


def downgrade() -> None:
    op.drop_table(TABLE, schema=op.get_context().version_table_schema)
