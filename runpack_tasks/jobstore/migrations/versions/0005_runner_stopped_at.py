"""Record when a runner stopped, so a stopped runner is inactive with its last_seen intact.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add runners.stopped_at."""
    with op.batch_alter_table("runners") as batch:
        batch.add_column(sa.Column("stopped_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Drop it."""
    with op.batch_alter_table("runners") as batch:
        batch.drop_column("stopped_at")
