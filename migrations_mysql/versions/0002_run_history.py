"""etl_run_history: one row per table per phase run, so a run can be audited after the fact.

Revision ID: 0002_run_history
Revises: 0001_tracking_status

``run_id`` groups the rows of one CLI invocation; ``values_adjusted`` counts values the copy had to
change (zero dates made NULL etc.). DATETIME(6) keeps sub-second start and end times.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002_run_history"
down_revision = "0001_tracking_status"
branch_labels = None
depends_on = None

TABLE = "etl_run_history"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("phase", sa.String(20), nullable=False),
        sa.Column("table_name", sa.String(255), nullable=False),
        sa.Column("strategy", sa.String(20), nullable=True),
        sa.Column("status", sa.String(50), nullable=False),
        sa.Column("primary_column_name", sa.String(255), nullable=True),
        sa.Column("watermark_before", sa.Text, nullable=True),
        sa.Column("watermark_after", sa.Text, nullable=True),
        sa.Column("rows_read", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rows_written", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("values_adjusted", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("notes", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("started_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("finished_at", mysql.DATETIME(fsp=6), nullable=True),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_etl_run_history_table_name_phase_started_at", TABLE, ["table_name", "phase", "started_at"])
    op.create_index("ix_etl_run_history_run_id", TABLE, ["run_id"])


def downgrade() -> None:
    op.drop_table(TABLE)
