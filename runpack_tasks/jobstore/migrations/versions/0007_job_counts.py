"""Count jobs per type and state, and completed jobs per type and run time, as they
change, so reading the counts or the run-time histogram never reads the jobs.

``job_counts`` holds changes (``n`` jobs of a type entered, or left with a negative ``n``,
a state); the count of a type and state is the sum of its rows. ``job_run_times`` does
the same for completed jobs (with a claim and a finish) by type and run-time bucket
(``bucket``: the index of the first of ``RUN_TIME_BOUNDS_MS`` the run does not pass, the
number of bounds past the last), with the sum of their run times. The database writes
them itself, from triggers on ``jobs``, in the transaction that changed the jobs, so every
writer is counted (the job store, bulk SQL, retention) and the sums are exact. Rows are
only ever added, never updated, so concurrent transitions do not wait on a shared counter
row; readers and beat fold them into one row per key from time to time
(``runpack_tasks.jobstore.counting``).

PostgreSQL counts inserts and deletes once per statement (its transition tables), and
updates once per row whose state or times changed (a heartbeat calls nothing); SQLite
counts once per row. Both start from one full count of the table.

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

#: The histogram's bucket bounds in milliseconds, as of this migration (the triggers file
#: each run under the first bound it does not pass).
RUN_TIME_BOUNDS_MS = (100, 500, 1_000, 5_000, 15_000, 60_000, 300_000, 900_000, 3_600_000)


def _run_ms(row: str) -> str:
    return f"({row}finished_at - {row}claimed_at)"


def _bucket(row: str) -> str:
    whens = " ".join(
        f"WHEN {_run_ms(row)} <= {bound} THEN {i}" for i, bound in enumerate(RUN_TIME_BOUNDS_MS)
    )
    return f"CASE {whens} ELSE {len(RUN_TIME_BOUNDS_MS)} END"


def _timed(row: str) -> str:
    return (
        f"{row}status = 'completed' AND {row}claimed_at IS NOT NULL"
        f" AND {row}finished_at IS NOT NULL"
    )


POSTGRESQL = [
    f"""
    CREATE FUNCTION runpack_count_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO job_counts (job_type, status, n)
            SELECT job_type, status, count(*) FROM new_rows GROUP BY job_type, status;
            INSERT INTO job_run_times (job_type, bucket, n, run_ms)
            SELECT job_type, {_bucket("")}, count(*), sum({_run_ms("")})
            FROM new_rows WHERE {_timed("")} GROUP BY 1, 2;
        ELSIF TG_OP = 'DELETE' THEN
            INSERT INTO job_counts (job_type, status, n)
            SELECT job_type, status, -count(*) FROM old_rows GROUP BY job_type, status;
            INSERT INTO job_run_times (job_type, bucket, n, run_ms)
            SELECT job_type, {_bucket("")}, -count(*), -sum({_run_ms("")})
            FROM old_rows WHERE {_timed("")} GROUP BY 1, 2;
        END IF;
        RETURN NULL;
    END
    $$
    """,
    f"""
    CREATE FUNCTION runpack_count_moved_job() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO job_counts (job_type, status, n)
        VALUES (OLD.job_type, OLD.status, -1), (NEW.job_type, NEW.status, 1);
        IF {_timed("OLD.")} THEN
            INSERT INTO job_run_times (job_type, bucket, n, run_ms)
            VALUES (OLD.job_type, {_bucket("OLD.")}, -1, -{_run_ms("OLD.")});
        END IF;
        IF {_timed("NEW.")} THEN
            INSERT INTO job_run_times (job_type, bucket, n, run_ms)
            VALUES (NEW.job_type, {_bucket("NEW.")}, 1, {_run_ms("NEW.")});
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE FUNCTION runpack_count_truncated_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM job_counts;
        DELETE FROM job_run_times;
        RETURN NULL;
    END
    $$
    """,
    "CREATE TRIGGER jobs_counted_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION runpack_count_jobs()",
    # per row, and only for a row whose state or times changed: a heartbeat calls nothing
    "CREATE TRIGGER jobs_counted_update AFTER UPDATE ON jobs FOR EACH ROW WHEN ("
    " OLD.status IS DISTINCT FROM NEW.status OR OLD.job_type IS DISTINCT FROM NEW.job_type"
    " OR OLD.claimed_at IS DISTINCT FROM NEW.claimed_at"
    " OR OLD.finished_at IS DISTINCT FROM NEW.finished_at"
    ") EXECUTE FUNCTION runpack_count_moved_job()",
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
    "DROP FUNCTION runpack_count_moved_job()",
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
    f"""
    CREATE TRIGGER jobs_timed_insert AFTER INSERT ON jobs WHEN {_timed("NEW.")} BEGIN
        INSERT INTO job_run_times (job_type, bucket, n, run_ms)
        VALUES (NEW.job_type, {_bucket("NEW.")}, 1, {_run_ms("NEW.")});
    END
    """,
    f"""
    CREATE TRIGGER jobs_timed_update AFTER UPDATE OF status, job_type, claimed_at, finished_at
    ON jobs WHEN OLD.status IS NOT NEW.status OR OLD.job_type IS NOT NEW.job_type
        OR OLD.claimed_at IS NOT NEW.claimed_at OR OLD.finished_at IS NOT NEW.finished_at
    BEGIN
        INSERT INTO job_run_times (job_type, bucket, n, run_ms)
        SELECT OLD.job_type, {_bucket("OLD.")}, -1, -{_run_ms("OLD.")} WHERE {_timed("OLD.")};
        INSERT INTO job_run_times (job_type, bucket, n, run_ms)
        SELECT NEW.job_type, {_bucket("NEW.")}, 1, {_run_ms("NEW.")} WHERE {_timed("NEW.")};
    END
    """,
    f"""
    CREATE TRIGGER jobs_timed_delete AFTER DELETE ON jobs WHEN {_timed("OLD.")} BEGIN
        INSERT INTO job_run_times (job_type, bucket, n, run_ms)
        VALUES (OLD.job_type, {_bucket("OLD.")}, -1, -{_run_ms("OLD.")});
    END
    """,
]
SQLITE_DROP = [
    "DROP TRIGGER jobs_counted_insert",
    "DROP TRIGGER jobs_counted_update",
    "DROP TRIGGER jobs_counted_delete",
    "DROP TRIGGER jobs_timed_insert",
    "DROP TRIGGER jobs_timed_update",
    "DROP TRIGGER jobs_timed_delete",
]


def upgrade() -> None:
    """Add job_counts and job_run_times, their triggers, and the counts of the jobs
    already there."""
    op.create_table(
        "job_counts",
        sa.Column("job_type", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "job_run_times",
        sa.Column("job_type", sa.String(length=128), nullable=False),
        sa.Column("bucket", sa.SmallInteger(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("run_ms", sa.BigInteger(), nullable=False),
    )
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL if postgresql else SQLITE:
        op.execute(statement)
    op.execute(
        "INSERT INTO job_counts (job_type, status, n)"
        " SELECT job_type, status, count(*) FROM jobs GROUP BY job_type, status"
    )
    op.execute(
        "INSERT INTO job_run_times (job_type, bucket, n, run_ms)"
        f" SELECT job_type, {_bucket('')}, count(*), sum({_run_ms('')})"
        f" FROM jobs WHERE {_timed('')} GROUP BY 1, 2"
    )


def downgrade() -> None:
    """Drop them."""
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL_DROP if postgresql else SQLITE_DROP:
        op.execute(statement)
    op.drop_table("job_run_times")
    op.drop_table("job_counts")
