"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Replica MySQL lineage: keep each revision small, MySQL DDL is not transactional and a failed
revision leaves its earlier statements behind. Name indexes explicitly (ix_<table>_<column>).
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
