"""Index completed jobs by finish time, for throughput over the last hour.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ix_jobs_status_finished."""
    op.create_index("ix_jobs_status_finished", "jobs", ["status", "finished_at"])


def downgrade() -> None:
    """Drop it."""
    op.drop_index("ix_jobs_status_finished", table_name="jobs")
