"""The read side of the job store: lookups, listings and counts the API and dashboard show."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.engine import Row

from runpack_tasks.jobstore.models import JOBS, RUNNERS, JobRow, JobStatus, RunnerKind, now_ms
from runpack_tasks.jobstore.runners import active_since
from runpack_tasks.jobstore.statements import Statement, select_in

AVAILABLE_JOBS_LIMIT = 50
RUNNER_RECENT_JOBS = 20
#: What a listing leaves out of a job: its identity, its parameters and its run's outcome.
DETAIL_ONLY_COLUMNS = frozenset(
    {
        "job_hash",
        "input_params",
        "claimed_at",
        "last_heartbeat",
        "finished_at",
        "console_output",
        "output_data",
        "error_message",
        "published_at",
    }
)
#: The columns of a listing's rows (``presenters.job_summary``), in the table's order.
SUMMARY_COLUMNS = [column for column in JOBS.c if column.name not in DETAIL_ONLY_COLUMNS]


def _summaries() -> sa.Select[Any]:
    """A listing's rows: the summary columns and ``claimed_by_name``, the claiming runner's
    name (None when no runner claimed the job or that runner was deleted)."""
    return sa.select(*SUMMARY_COLUMNS, RUNNERS.c.name.label("claimed_by_name")).select_from(
        JOBS.outerjoin(RUNNERS, RUNNERS.c.id == JOBS.c.claimed_by)
    )


@dataclass(frozen=True)
class Page:
    """One page of a listing and the number of rows matching its filters."""

    rows: list[Row[Any]]
    total: int


_BY_ID = Statement(lambda _d: sa.select(JOBS).where(JOBS.c.id == sa.bindparam("key", None)))
_BY_HASH = Statement(lambda _d: sa.select(JOBS).where(JOBS.c.job_hash == sa.bindparam("key", None)))


def first_job(statement: Statement, engine: Engine, **params: Any) -> JobRow | None:
    """The first job row ``statement`` returns (it selects or returns every column)."""
    rows = statement.run(engine, params)
    return JobRow._make(rows[0]) if rows else None


def job_by_id(engine: Engine, job_id: str) -> JobRow | None:
    """The job with this id, or None."""
    return first_job(_BY_ID, engine, key=job_id)


def job_by_hash(engine: Engine, digest: str) -> JobRow | None:
    """The job with this hash, or None."""
    return first_job(_BY_HASH, engine, key=digest)


def jobs_by_ids(engine: Engine, job_ids: list[str]) -> dict[str, JobRow]:
    """The jobs with these ids, by id (those that exist)."""
    jobs = (JobRow._make(row) for row in select_in(engine, JOBS, "id", job_ids))
    return {job.id: job for job in jobs}


def jobs_by_hashes(engine: Engine, digests: list[str]) -> dict[str, JobRow]:
    """The jobs with these hashes, by hash (those that exist)."""
    if not digests:
        return {}
    jobs = (JobRow._make(row) for row in select_in(engine, JOBS, "job_hash", digests))
    return {job.job_hash: job for job in jobs}


def available_jobs(
    engine: Engine, job_types: list[str], limit: int = AVAILABLE_JOBS_LIMIT
) -> list[Row[Any]]:
    """Pending jobs of these types, oldest first."""
    statement = (
        sa.select(JOBS.c.id, JOBS.c.job_type, JOBS.c.input_params, JOBS.c.created_at)
        .where(JOBS.c.status == JobStatus.PENDING.value, JOBS.c.job_type.in_(job_types))
        .order_by(JOBS.c.created_at, JOBS.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return list(conn.execute(statement).all())


def pending_types(engine: Engine, job_types: list[str]) -> list[str]:
    """Those of ``job_types`` with at least one pending job (one index probe per type)."""
    if not job_types:
        return []
    probes = [
        sa.select(sa.literal(job_type, sa.String).label("job_type")).where(
            sa.exists().where(JOBS.c.status == JobStatus.PENDING.value, JOBS.c.job_type == job_type)
        )
        for job_type in job_types
    ]
    with engine.connect() as conn:
        return list(conn.execute(sa.union_all(*probes)).scalars().all())


def list_jobs(
    engine: Engine,
    *,
    status: JobStatus | None = None,
    job_type: str | None = None,
    limit: int = 50,
    offset: int = 0,
    before: tuple[int, str] | None = None,
    count: bool = True,
) -> Page:
    """Jobs newest first, filtered by status and type; ``before`` (created_at, id) starts
    after that job (keyset pagination: as fast on the last page as on the first), where
    ``offset`` reads and skips every row before the page. ``count=False`` leaves the
    total out (-1)."""
    conditions = []
    if status is not None:
        conditions.append(JOBS.c.status == status.value)
    if job_type is not None:
        conditions.append(JOBS.c.job_type == job_type)
    listed = list(conditions)
    if before is not None:
        created_at, job_id = before
        # the row comparison reads the created_at index from the cursor on
        listed.append(sa.tuple_(JOBS.c.created_at, JOBS.c.id) < (created_at, job_id))
    with engine.connect() as conn:
        rows = conn.execute(
            _summaries()
            .where(*listed)
            .order_by(JOBS.c.created_at.desc(), JOBS.c.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
        total = (
            int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(JOBS).where(*conditions)
                ).scalar_one()
            )
            if count
            else -1
        )
    return Page(rows=list(rows), total=total)


def job_counts(engine: Engine) -> dict[JobStatus, int]:
    """How many jobs are in each state (every state present, zero when none)."""
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(JOBS.c.status, sa.func.count()).group_by(JOBS.c.status)
        ).all()
    counts = dict.fromkeys(JobStatus, 0)
    for status, count in found:
        counts[JobStatus(status)] = int(count)
    return counts


def runner_by_id(engine: Engine, runner_id: str) -> Row[Any] | None:
    """The runner with this id, or None."""
    with engine.connect() as conn:
        return conn.execute(sa.select(RUNNERS).where(RUNNERS.c.id == runner_id)).first()


def job_with_runner_name(engine: Engine, job_id: str) -> tuple[JobRow, str | None] | None:
    """The job with this id and its claiming runner's name (as in listings), or None."""
    select = sa.select(JOBS, RUNNERS.c.name).select_from(
        JOBS.outerjoin(RUNNERS, RUNNERS.c.id == JOBS.c.claimed_by)
    )
    with engine.connect() as conn:
        row = conn.execute(select.where(JOBS.c.id == job_id)).first()
    return None if row is None else (JobRow._make(row[:-1]), row[-1])


def list_runners(engine: Engine, *, limit: int = 100, offset: int = 0) -> Page:
    """A page of runners, most recently seen first (ties by id, so pages do not overlap)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(RUNNERS)
            .order_by(RUNNERS.c.last_seen.desc(), RUNNERS.c.id)
            .limit(limit)
            .offset(offset)
        ).all()
        total = conn.execute(sa.select(sa.func.count()).select_from(RUNNERS))
    return Page(rows=list(rows), total=int(total.scalar_one()))


def runner_counts(engine: Engine, active_s: float) -> tuple[int, int]:
    """(total, active): active runners were seen within ``active_s`` seconds."""
    cutoff = now_ms() - int(active_s * 1000)
    active = sa.func.sum(sa.case((active_since(cutoff), 1), else_=0))
    with engine.connect() as conn:
        total, active_count = conn.execute(sa.select(sa.func.count(), active)).one()
    return int(total), int(active_count or 0)


def recent_jobs_of_runner(
    engine: Engine, runner_id: str, limit: int = RUNNER_RECENT_JOBS
) -> list[Row[Any]]:
    """The jobs this runner claimed most recently."""
    statement = (
        _summaries()
        .where(JOBS.c.claimed_by == runner_id)
        .order_by(JOBS.c.updated_at.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return list(conn.execute(statement).all())


def ping(engine: Engine) -> None:
    """Raise unless the database answers."""
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


def completed_per_minute(engine: Engine, since_ms: int) -> dict[int, int]:
    """Jobs completed per minute (keyed by the minute's start, epoch ms) since ``since_ms``."""
    minute = (JOBS.c.finished_at / 60_000).cast(sa.BigInteger) * 60_000
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(minute.label("minute"), sa.func.count())
            .where(JOBS.c.status == JobStatus.COMPLETED.value, JOBS.c.finished_at >= since_ms)
            .group_by("minute")
        ).all()
    return {int(start): int(count) for start, count in rows}


def heartbeat_lag(engine: Engine) -> dict[str, float]:
    """Per type, seconds since the stalest heartbeat of a running job."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(JOBS.c.job_type, sa.func.min(JOBS.c.last_heartbeat))
            .where(JOBS.c.status.in_([JobStatus.CLAIMED.value, JobStatus.IN_PROGRESS.value]))
            .group_by(JOBS.c.job_type)
        ).all()
    now = now_ms()
    return {job_type: (now - int(oldest)) / 1000 for job_type, oldest in rows if oldest}


def running_jobs_by_runner(engine: Engine, runner_ids: list[str]) -> dict[str, str]:
    """The job each of these runners is running now (one per runner, the most recently
    claimed)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(JOBS.c.claimed_by, JOBS.c.id)
            .where(
                JOBS.c.claimed_by.in_(runner_ids),
                JOBS.c.status.in_([JobStatus.CLAIMED.value, JobStatus.IN_PROGRESS.value]),
            )
            .order_by(JOBS.c.claimed_at)
        ).all()
    return {claimed_by: job_id for claimed_by, job_id in rows}


@dataclass(frozen=True)
class Served:
    """The job types active runners serve: by any runner, and by Celery workers."""

    any: frozenset[str]
    celery: frozenset[str]


def job_types_served(engine: Engine, active_s: float) -> Served:
    """Job types some runner seen within ``active_s`` seconds serves (one query)."""
    cutoff = now_ms() - int(active_s * 1000)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(RUNNERS.c.kind, RUNNERS.c.capabilities).where(active_since(cutoff))
        ).all()
    celery = RunnerKind.CELERY.value
    return Served(
        any=frozenset(t for _, capabilities in rows for t in capabilities),
        celery=frozenset(t for kind, capabilities in rows if kind == celery for t in capabilities),
    )
