"""etl_copy_column_status: one watermark per column for the OR-fallback strategy.

Revision ID: 0003_column_status
Revises: 0002_run_history

A table without one reliable change column is copied with ``col_a >= :a OR col_b >= :b``; each
column keeps its own high-water mark here, keyed by (table_name, column_name).
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003_column_status"
down_revision = "0002_run_history"
branch_labels = None
depends_on = None

TABLE = "etl_copy_column_status"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("table_name", sa.String(255), nullable=False),
        sa.Column("column_name", sa.String(255), nullable=False),
        sa.Column("last_value", sa.String(255), nullable=True),
        sa.Column("_updated_at", mysql.TIMESTAMP,
                  server_default=sa.text("CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP")),
        sa.PrimaryKeyConstraint("table_name", "column_name"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )


def downgrade() -> None:
    op.drop_table(TABLE)
