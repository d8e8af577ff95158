"""etl_copy_status.rows_copied becomes BIGINT: INT overflows on the biggest OpenDental tables.

Revision ID: 0004_widen_rows
Revises: 0003_column_status

MySQL's MODIFY restates the whole column, so the existing NULL-ability and DEFAULT 0 are passed
along, or they would be lost. Downgrade narrows back (and fails if a count no longer fits in INT).
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_widen_rows"
down_revision = "0003_column_status"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("etl_copy_status", "rows_copied", type_=sa.BigInteger(), existing_type=sa.Integer(),
                    existing_nullable=True, existing_server_default="0")


def downgrade() -> None:
    op.alter_column("etl_copy_status", "rows_copied", type_=sa.Integer(), existing_type=sa.BigInteger(),
                    existing_nullable=True, existing_server_default="0")
