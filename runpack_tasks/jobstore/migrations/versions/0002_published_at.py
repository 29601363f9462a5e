"""Record when a pending job's Celery message went out.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add jobs.published_at and the index beat's republishing reads."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("published_at", sa.BigInteger(), nullable=True))
    op.create_index("ix_jobs_status_type_published", "jobs", ["status", "job_type", "published_at"])


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_jobs_status_type_published", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("published_at")
