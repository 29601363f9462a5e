"""The job counts and run-time histograms the database keeps: after every kind of change,
through the job store or plain SQL, they equal a count of the table, and folding their
rows changes no count."""

from __future__ import annotations

import importlib
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from sqlalchemy import Engine

from runpack_tasks.jobstore import counting, lifecycle, runners
from runpack_tasks.jobstore.hashing import job_hash
from runpack_tasks.jobstore.lifecycle import Submission
from runpack_tasks.jobstore.models import JOB_COUNTS, JOBS, JobStatus
from tests.support import unique_params


def table_counts(engine: Engine) -> list[tuple[str, str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(JOBS.c.job_type, JOBS.c.status, sa.func.count()).group_by(
                JOBS.c.job_type, JOBS.c.status
            )
        ).all()
    return sorted((t, s, int(n)) for t, s, n in rows)


def table_histograms(engine: Engine) -> list[tuple[str, list[int], float, int]]:
    """What ``counting.run_time_histograms`` answers, read from the jobs themselves."""
    run_ms = JOBS.c.finished_at - JOBS.c.claimed_at
    bounds = counting.RUN_TIME_BOUNDS_S
    within = [sa.func.sum(sa.case((run_ms <= int(b * 1000), 1), else_=0)) for b in bounds]
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(JOBS.c.job_type, sa.func.sum(run_ms), sa.func.count(), *within)
            .where(
                JOBS.c.status == JobStatus.COMPLETED.value,
                JOBS.c.claimed_at.is_not(None),
                JOBS.c.finished_at.is_not(None),
            )
            .group_by(JOBS.c.job_type)
            .order_by(JOBS.c.job_type)
        ).all()
    return [(row[0], [int(v) for v in row[3:]], int(row[1]) / 1000, int(row[2])) for row in rows]


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
    # and rows written by plain SQL, as an operator might, with runs of every length
    with engine.begin() as conn:
        conn.execute(sa.update(JOBS).where(JOBS.c.id == ids[0]).values(status="failed"))
        conn.execute(sa.delete(JOBS).where(JOBS.c.job_type == "b", JOBS.c.status == "pending"))
        for n, run_ms in enumerate([0, 100, 101, 4_000, 3_600_000, 3_600_001, 9_000_000]):
            conn.execute(
                sa.insert(JOBS).values(
                    id=f"timed-{n}",
                    job_hash=f"{n:064d}",
                    job_type="timed",
                    input_params={},
                    status="completed",
                    created_at=1,
                    updated_at=1,
                    attempts=1,
                    claimed_at=1_000,
                    finished_at=1_000 + run_ms,
                )
            )
        conn.execute(sa.delete(JOBS).where(JOBS.c.id == "timed-3"))
        conn.execute(sa.update(JOBS).where(JOBS.c.id == "timed-2").values(finished_at=2_000_000))

    # Then the kept counts and run times are the table's
    assert kept_counts(engine) == table_counts(engine)
    assert any(status == "expired" for _, status, _ in kept_counts(engine))
    assert counting.run_time_histograms(engine) == table_histograms(engine)
    timed = dict((t, (c, n)) for t, c, _, n in counting.run_time_histograms(engine))["timed"]
    assert timed == ([2, 2, 2, 2, 2, 2, 2, 2, 4], 6)


def test_the_triggers_file_runs_under_the_bounds_the_histogram_reads() -> None:
    migration = importlib.import_module(
        "runpack_tasks.jobstore.migrations.versions.0007_job_counts"
    )
    bounds_ms = tuple(round(bound * 1000) for bound in counting.RUN_TIME_BOUNDS_S)
    assert bounds_ms == migration.RUN_TIME_BOUNDS_MS


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
    churn(3)  # changes made after the last fold, whichever finished first
    assert count_rows(engine) > 2

    # When the rows are folded
    counting.fold(engine)

    # Then one row is left per type and state, and the counts are the table's
    assert count_rows(engine) == len(table_counts(engine))
    assert kept_counts(engine) == table_counts(engine) == [("a", "claimed", 83)]
