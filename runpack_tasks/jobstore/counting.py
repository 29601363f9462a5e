"""How many jobs there are per type and state, from the counts the database keeps.

Triggers on ``jobs`` add a row to ``job_counts`` for every change of a job's state, in the
transaction that made it (migration 0007), so a count is the sum of its rows: exact, and
as cheap to read as there are rows, however many jobs the table holds. Reading folds the
rows into one per type and state once they pile up.
"""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from runpack_tasks.jobstore.models import JOB_COUNTS

#: Rows past which a reading folds them.
FOLD_ABOVE_ROWS = 1000
#: The PostgreSQL advisory lock a fold holds, so that readers do not fold at once.
FOLD_LOCK = 0x72756E70_636E74  # "runp" "cnt"


def counts_by_type(engine: Engine) -> list[tuple[str, str, int]]:
    """(job_type, status, count) for every pair with jobs."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                JOB_COUNTS.c.job_type,
                JOB_COUNTS.c.status,
                sa.func.sum(JOB_COUNTS.c.n),
                sa.func.count(),
            ).group_by(JOB_COUNTS.c.job_type, JOB_COUNTS.c.status)
        ).all()
    if sum(int(stored) for *_, stored in rows) > FOLD_ABOVE_ROWS:
        fold(engine)
    return [(job_type, status, int(n)) for job_type, status, n, _ in rows if int(n)]


def fold(engine: Engine) -> None:
    """Replace the rows of ``job_counts`` by one per type and state (their sum).

    The rows taken are those this transaction deletes: a change committed meanwhile is
    either among them or left in place, never lost or counted twice."""
    with engine.begin() as conn:
        if not _fold_lock(conn):
            return
        taken = conn.execute(
            sa.delete(JOB_COUNTS).returning(
                JOB_COUNTS.c.job_type, JOB_COUNTS.c.status, JOB_COUNTS.c.n
            )
        ).all()
        sums: Counter[tuple[str, str]] = Counter()
        for job_type, status, n in taken:
            sums[job_type, status] += int(n)
        folded = [{"job_type": t, "status": s, "n": n} for (t, s), n in sums.items() if n]
        if folded:
            conn.execute(sa.insert(JOB_COUNTS), folded)


def _fold_lock(conn: Connection) -> bool:
    """Whether this transaction may fold (on SQLite, the one writer always may)."""
    if conn.dialect.name != "postgresql":
        return True
    return bool(conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(FOLD_LOCK))).scalar())
