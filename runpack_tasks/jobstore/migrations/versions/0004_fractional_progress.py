"""Store progress as double precision numbers: runners report fractions such as 0.42 of 1.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PROGRESS_COLUMNS = ("progress_current", "progress_total")


def upgrade() -> None:
    """jobs.progress_current and jobs.progress_total become double precision."""
    with op.batch_alter_table("jobs") as batch:
        for name in PROGRESS_COLUMNS:
            batch.alter_column(
                name,
                existing_type=sa.BigInteger(),
                type_=sa.Double(),
                existing_nullable=True,
                postgresql_using=f"{name}::double precision",
            )


def downgrade() -> None:
    """Back to integers; a fraction is rounded to the nearest one."""
    with op.batch_alter_table("jobs") as batch:
        for name in PROGRESS_COLUMNS:
            batch.alter_column(
                name,
                existing_type=sa.Double(),
                type_=sa.BigInteger(),
                existing_nullable=True,
                postgresql_using=f"round({name})::bigint",
            )
