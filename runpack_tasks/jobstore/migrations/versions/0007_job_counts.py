"""Count jobs per type and state as they change, so reading the counts never reads the jobs.

``job_counts`` holds changes (``n`` jobs of a type entered, or left with a negative ``n``,
a state); the count of a type and state is the sum of its rows. The database writes them
itself, from triggers on ``jobs``, in the transaction that changed the jobs, so every
writer is counted (the job store, bulk SQL, retention) and the sums are exact. Rows are
only ever added, never updated, so concurrent transitions do not wait on a shared counter
row; the readers fold them into one row per type and state from time to time
(``runpack_tasks.jobstore.counting``).

PostgreSQL counts once per statement (its transition tables), SQLite once per row. The
counts start from one full count of the table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

POSTGRESQL = [
    """
    CREATE FUNCTION runpack_count_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO job_counts (job_type, status, n)
            SELECT job_type, status, count(*) FROM new_rows GROUP BY job_type, status;
        ELSIF TG_OP = 'DELETE' THEN
            INSERT INTO job_counts (job_type, status, n)
            SELECT job_type, status, -count(*) FROM old_rows GROUP BY job_type, status;
        ELSE
            INSERT INTO job_counts (job_type, status, n)
            SELECT job_type, status, sum(n) FROM (
                SELECT job_type, status, 1 AS n FROM new_rows
                UNION ALL
                SELECT job_type, status, -1 AS n FROM old_rows
            ) AS moved
            GROUP BY job_type, status
            HAVING sum(n) <> 0;
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE FUNCTION runpack_count_truncated_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM job_counts;
        RETURN NULL;
    END
    $$
    """,
    "CREATE TRIGGER jobs_counted_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION runpack_count_jobs()",
    "CREATE TRIGGER jobs_counted_update AFTER UPDATE ON jobs"
    " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION runpack_count_jobs()",
    "CREATE TRIGGER jobs_counted_delete AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION runpack_count_jobs()",
    "CREATE TRIGGER jobs_counted_truncate AFTER TRUNCATE ON jobs"
    " FOR EACH STATEMENT EXECUTE FUNCTION runpack_count_truncated_jobs()",
]
POSTGRESQL_DROP = [
    "DROP TRIGGER jobs_counted_insert ON jobs",
    "DROP TRIGGER jobs_counted_update ON jobs",
    "DROP TRIGGER jobs_counted_delete ON jobs",
    "DROP TRIGGER jobs_counted_truncate ON jobs",
    "DROP FUNCTION runpack_count_jobs()",
    "DROP FUNCTION runpack_count_truncated_jobs()",
]
SQLITE = [
    """
    CREATE TRIGGER jobs_counted_insert AFTER INSERT ON jobs BEGIN
        INSERT INTO job_counts (job_type, status, n) VALUES (NEW.job_type, NEW.status, 1);
    END
    """,
    """
    CREATE TRIGGER jobs_counted_update AFTER UPDATE OF status, job_type ON jobs
    WHEN OLD.status IS NOT NEW.status OR OLD.job_type IS NOT NEW.job_type BEGIN
        INSERT INTO job_counts (job_type, status, n)
        VALUES (OLD.job_type, OLD.status, -1), (NEW.job_type, NEW.status, 1);
    END
    """,
    """
    CREATE TRIGGER jobs_counted_delete AFTER DELETE ON jobs BEGIN
        INSERT INTO job_counts (job_type, status, n) VALUES (OLD.job_type, OLD.status, -1);
    END
    """,
]
SQLITE_DROP = [
    "DROP TRIGGER jobs_counted_insert",
    "DROP TRIGGER jobs_counted_update",
    "DROP TRIGGER jobs_counted_delete",
]


def upgrade() -> None:
    """Add job_counts, its triggers, and the count of the jobs already there."""
    op.create_table(
        "job_counts",
        sa.Column("job_type", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL if postgresql else SQLITE:
        op.execute(statement)
    op.execute(
        "INSERT INTO job_counts (job_type, status, n)"
        " SELECT job_type, status, count(*) FROM jobs GROUP BY job_type, status"
    )


def downgrade() -> None:
    """Drop them."""
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL_DROP if postgresql else SQLITE_DROP:
        op.execute(statement)
    op.drop_table("job_counts")
