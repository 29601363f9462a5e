"""The job counts the database keeps: after every kind of change, through the job store or
plain SQL, they equal a count of the table, and folding their rows changes no count."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from sqlalchemy import Engine

from runpack_tasks.jobstore import counting, lifecycle, runners
from runpack_tasks.jobstore.hashing import job_hash
from runpack_tasks.jobstore.lifecycle import Submission
from runpack_tasks.jobstore.models import JOB_COUNTS, JOBS
from tests.support import unique_params


def table_counts(engine: Engine) -> list[tuple[str, str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(JOBS.c.job_type, JOBS.c.status, sa.func.count()).group_by(
                JOBS.c.job_type, JOBS.c.status
            )
        ).all()
    return sorted((t, s, int(n)) for t, s, n in rows)


def kept_counts(engine: Engine) -> list[tuple[str, str, int]]:
    return sorted(counting.counts_by_type(engine))


def count_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(JOB_COUNTS)).scalar_one())


def test_the_kept_counts_follow_every_change(engine: Engine) -> None:
    # Given jobs taken through every transition
    runner = runners.register(engine, "r", ["a", "b"])
    ids = [lifecycle.submit(engine, "a", unique_params()).job.id for _ in range(6)]
    batch = [unique_params() for _ in range(4)]
    lifecycle.submit_many(engine, [Submission("b", p, job_hash("b", p)) for p in batch])
    lifecycle.submit(engine, "a", {"again": 1})
    lifecycle.submit(engine, "a", {"again": 1})  # an existing job: nothing new
    for job_id in ids[:5]:
        assert lifecycle.claim(engine, job_id, runner) is not None
    lifecycle.heartbeat(
        engine, ids[0], runner, progress_current=1, progress_total=2, console_output=None
    )
    lifecycle.heartbeat(  # in_progress to in_progress: no change of state
        engine, ids[0], runner, progress_current=2, progress_total=2, console_output=None
    )
    lifecycle.complete(engine, ids[0], runner, output_data={}, console_output=None)
    lifecycle.complete(engine, ids[1], runner, output_data={}, console_output=None)
    lifecycle.fail(engine, ids[2], runner, error_message="no", console_output=None)
    lifecycle.release(engine, ids[3], runner)
    lifecycle.cancel(engine, ids[4])
    lifecycle.expire(engine, ids[1])
    lifecycle.resubmit(engine, ids[2])
    lifecycle.delete(engine, [ids[5]])
    # and rows written by plain SQL, as an operator might
    with engine.begin() as conn:
        conn.execute(sa.update(JOBS).where(JOBS.c.id == ids[0]).values(status="failed"))
        conn.execute(sa.delete(JOBS).where(JOBS.c.job_type == "b", JOBS.c.status == "pending"))

    # Then the kept counts are the table's
    assert kept_counts(engine) == table_counts(engine)
    assert any(status == "expired" for _, status, _ in kept_counts(engine))


def test_folding_keeps_every_count_while_jobs_change(engine: Engine) -> None:
    # Given many changes, and folds running while more jobs arrive
    runner = runners.register(engine, "r", ["a"])

    def churn(n: int) -> None:
        for _ in range(n):
            job = lifecycle.submit(engine, "a", unique_params()).job
            lifecycle.claim(engine, job.id, runner)

    with ThreadPoolExecutor(3) as pool:
        work = [pool.submit(churn, 40), pool.submit(churn, 40)]
        for _ in range(10):
            pool.submit(counting.fold, engine).result()
        for done in work:
            done.result()
    assert count_rows(engine) > 2

    # When the rows are folded
    counting.fold(engine)

    # Then one row is left per type and state, and the counts are the table's
    assert count_rows(engine) == len(table_counts(engine))
    assert kept_counts(engine) == table_counts(engine) == [("a", "claimed", 80)]
