"""etl_run_history: one row per table per phase run, so a run can be audited after the fact.

Revision ID: 0002_run_history
Revises: 0001_tracking_status

``run_id`` groups the rows of one CLI invocation; ``values_adjusted`` counts values a phase had to
change (zero dates made NULL etc.). The id is a bigint identity.
"""
import sqlalchemy as sa
from alembic import op

revision = "0002_run_history"
down_revision = "0001_tracking_status"
branch_labels = None
depends_on = None

TABLE = "etl_run_history"


def upgrade() -> None:
    schema = op.get_context().version_table_schema
    op.create_table(
        TABLE,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
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
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        schema=schema,
    )
    op.create_index("ix_etl_run_history_table_name_phase_started_at", TABLE, ["table_name", "phase", "started_at"],
                    schema=schema)
    op.create_index("ix_etl_run_history_run_id", TABLE, ["run_id"], schema=schema)


def downgrade() -> None:
    op.drop_table(TABLE, schema=op.get_context().version_table_schema)
