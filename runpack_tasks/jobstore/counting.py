"""How many jobs there are per type and state, and how long completed jobs ran, from the
counts the database keeps.

Triggers on ``jobs`` (migration 0007) add a row to ``job_counts`` for every change of a
job's state, and to ``job_run_times`` for every job that became completed (or stopped
being so), in the transaction that made the change. A count is the sum of its rows:
exact, and as cheap to read as there are rows, however many jobs the table holds.
Reading folds the rows into one per key once they pile up, and so does beat.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from runpack_tasks.jobstore.models import JOB_COUNTS, JOB_RUN_TIMES

#: The run-time histogram's bucket bounds, in seconds: migration 0007's triggers file a
#: completed job under the first bound its run does not pass (and past the last, under
#: the number of bounds). Other bounds would take a migration.
RUN_TIME_BOUNDS_S = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600)
#: Rows past which a reading folds them.
FOLD_ABOVE_ROWS = 1000
#: The PostgreSQL advisory lock a fold holds, so that readers do not fold at once.
FOLD_LOCK = 0x72756E70_636E74  # "runp" "cnt"


def counts_by_type(engine: Engine) -> list[tuple[str, str, int]]:
    """(job_type, status, count) for every pair with jobs."""
    c = JOB_COUNTS.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(c.job_type, c.status, sa.func.sum(c.n), sa.func.count()).group_by(
                c.job_type, c.status
            )
        ).all()
    _fold_if_piled_up(engine, rows)
    return [(job_type, status, int(n)) for job_type, status, n, _ in rows if int(n)]


def run_time_histograms(engine: Engine) -> list[tuple[str, list[int], float, int]]:
    """Per type, over completed jobs: cumulative counts of runs (claim to finish) at most
    each of ``RUN_TIME_BOUNDS_S``, the sum of the run times in seconds, and the count."""
    c = JOB_RUN_TIMES.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                c.job_type, c.bucket, sa.func.sum(c.n), sa.func.sum(c.run_ms), sa.func.count()
            ).group_by(c.job_type, c.bucket)
        ).all()
    _fold_if_piled_up(engine, rows)
    per_bucket: dict[str, list[int]] = {}
    run_ms: Counter[str] = Counter()
    for job_type, bucket, n, total_ms, _ in rows:
        per_bucket.setdefault(job_type, [0] * (len(RUN_TIME_BOUNDS_S) + 1))[bucket] += int(n)
        run_ms[job_type] += int(total_ms)
    histograms = []
    for job_type, counts in sorted(per_bucket.items()):
        if not any(counts):
            continue
        cumulative = [sum(counts[: i + 1]) for i in range(len(RUN_TIME_BOUNDS_S))]
        histograms.append((job_type, cumulative, run_ms[job_type] / 1000, sum(counts)))
    return histograms


def _fold_if_piled_up(engine: Engine, groups: Sequence[Sequence[Any]]) -> None:
    """Fold when the grouped reading (each group's row count last) covered too many rows."""
    if sum(int(group[-1]) for group in groups) > FOLD_ABOVE_ROWS:
        fold(engine)


def fold(engine: Engine) -> None:
    """Replace the rows of ``job_counts`` and ``job_run_times`` by one per key (their sums).

    The rows taken are those this transaction deletes: a change committed meanwhile is
    either among them or left in place, never lost or counted twice."""
    with engine.begin() as conn:
        if not _fold_lock(conn):
            return
        _fold(conn, JOB_COUNTS, ("job_type", "status"), ("n",))
        _fold(conn, JOB_RUN_TIMES, ("job_type", "bucket"), ("n", "run_ms"))


def _fold(conn: Connection, table: sa.Table, keys: tuple[str, ...], sums: tuple[str, ...]) -> None:
    taken = conn.execute(sa.delete(table).returning(*(table.c[k] for k in keys + sums))).all()
    totals: dict[tuple[object, ...], list[int]] = {}
    for row in taken:
        summed = totals.setdefault(tuple(row[: len(keys)]), [0] * len(sums))
        for i, value in enumerate(row[len(keys) :]):
            summed[i] += int(value)
    folded = [
        {**dict(zip(keys, key, strict=True)), **dict(zip(sums, values, strict=True))}
        for key, values in totals.items()
        if any(values)
    ]
    if folded:
        conn.execute(sa.insert(table), folded)


def _fold_lock(conn: Connection) -> bool:
    """Whether this transaction may fold (on SQLite, the one writer always may)."""
    if conn.dialect.name != "postgresql":
        return True
    return bool(conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(FOLD_LOCK))).scalar())
