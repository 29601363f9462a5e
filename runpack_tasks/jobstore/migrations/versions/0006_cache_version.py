"""Record the plugin's cache_version with each result, so results of older code can expire.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add jobs.cache_version."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("cache_version", sa.String(length=128), nullable=True))


def downgrade() -> None:
    """Drop it."""
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("cache_version")
