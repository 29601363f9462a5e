"""The job state machine (SPEC §2): the only code that writes a job's status.

One function per transition. Each is a single conditional statement (``UPDATE ... WHERE
status IN (...) [AND claimed_by = ...] RETURNING``), so of two racing callers exactly one
wins; the loser gets ``None`` (or ``False``) back, never an exception.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row

from runpack_tasks.jobstore.hashing import job_hash
from runpack_tasks.jobstore.models import (
    ACTIVE_STATUSES,
    JOBS,
    RESUBMITTABLE_STATUSES,
    JobStatus,
    now_ms,
)

TIMED_OUT_MESSAGE = "timed out: no heartbeat for {timeout_s:g} s"


@dataclass(frozen=True)
class SubmitOutcome:
    """What ``submit`` did: ``created`` and ``requeued`` tell the caller to publish."""

    job: Row[Any]
    created: bool
    requeued: bool

    @property
    def needs_publish(self) -> bool:
        """True for the one caller that made the job pending."""
        return self.created or self.requeued


@dataclass(frozen=True)
class ReapOutcome:
    """The stale claims ``reap`` returned to pending and those it failed."""

    requeued: list[str]
    failed: list[str]


def _insert_ignoring_duplicates(engine: Engine) -> Any:
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(JOBS).on_conflict_do_nothing(index_elements=["job_hash"])


def _update_one(
    engine: Engine,
    job_id: str,
    allowed_from: Iterable[JobStatus],
    owner: str | None = None,
    **values: Any,
) -> Row[Any] | None:
    """Apply ``values`` if the job's status is in ``allowed_from`` (and ``owner`` claimed it)."""
    condition = sa.and_(
        JOBS.c.id == job_id, JOBS.c.status.in_([status.value for status in allowed_from])
    )
    if owner is not None:
        condition = sa.and_(condition, JOBS.c.claimed_by == owner)
    values.setdefault("updated_at", now_ms())
    statement = sa.update(JOBS).where(condition).values(**values).returning(*JOBS.c)
    with engine.begin() as conn:
        return conn.execute(statement).first()


def submit(
    engine: Engine,
    job_type: str,
    input_params: dict[str, Any],
    digest: str | None = None,
    publishing: bool = False,
) -> SubmitOutcome:
    """Create the job for this hash, requeue it if it failed or expired, or return it as is.

    ``digest`` spares hashing again when the caller already has ``job_hash(...)``.
    ``publishing`` records, in the same write, that the caller will send the job's message
    (it calls ``mark_unpublished`` if sending fails).
    """
    digest = digest or job_hash(job_type, input_params)
    now = now_ms()
    row = {
        "id": str(uuid.uuid4()),
        "job_hash": digest,
        "job_type": job_type,
        "input_params": input_params,
        "status": JobStatus.PENDING.value,
        "created_at": now,
        "updated_at": now,
        "attempts": 0,
        "published_at": now if publishing else None,
    }
    insert = _insert_ignoring_duplicates(engine).values(**row).returning(*JOBS.c)
    with engine.begin() as conn:
        created = conn.execute(insert).first()
    if created is not None:
        return SubmitOutcome(created, created=True, requeued=False)
    existing = _select_by_hash(engine, digest)
    if existing.status in {status.value for status in RESUBMITTABLE_STATUSES}:
        requeued = resubmit(engine, existing.id, publishing=publishing)
        if requeued is not None:
            return SubmitOutcome(requeued, created=False, requeued=True)
        existing = _select_by_hash(engine, digest)
    return SubmitOutcome(existing, created=False, requeued=False)


def _select_by_hash(engine: Engine, digest: str) -> Row[Any]:
    with engine.connect() as conn:
        found = conn.execute(sa.select(JOBS).where(JOBS.c.job_hash == digest)).first()
    if found is None:  # deleted between our insert and this read: a rare admin race
        raise LookupError(f"job with hash {digest} vanished")
    return found


def resubmit(engine: Engine, job_id: str, publishing: bool = False) -> Row[Any] | None:
    """failed/expired -> pending, with a fresh attempt count and no old outcome."""
    return _update_one(
        engine,
        job_id,
        RESUBMITTABLE_STATUSES,
        status=JobStatus.PENDING.value,
        attempts=0,
        published_at=now_ms() if publishing else None,
        claimed_by=None,
        claimed_at=None,
        last_heartbeat=None,
        finished_at=None,
        progress_current=None,
        progress_total=None,
        console_output=None,
        output_data=None,
        error_message=None,
    )


def claim(engine: Engine, job_id: str, runner_id: str) -> Row[Any] | None:
    """pending -> claimed by ``runner_id``; counts one attempt."""
    now = now_ms()
    return _update_one(
        engine,
        job_id,
        [JobStatus.PENDING],
        status=JobStatus.CLAIMED.value,
        claimed_by=runner_id,
        claimed_at=now,
        last_heartbeat=now,
        attempts=JOBS.c.attempts + 1,
        updated_at=now,
    )


def heartbeat(
    engine: Engine,
    job_id: str,
    runner_id: str,
    *,
    progress_current: int | None,
    progress_total: int | None,
    console_output: str | None,
) -> Row[Any] | None:
    """claimed/in_progress -> in_progress, recording progress and the log (claimer only)."""
    now = now_ms()
    values: dict[str, Any] = {
        "status": JobStatus.IN_PROGRESS.value,
        "last_heartbeat": now,
        "updated_at": now,
    }
    if progress_current is not None:
        values["progress_current"] = progress_current
    if progress_total is not None:
        values["progress_total"] = progress_total
    if console_output is not None:
        values["console_output"] = console_output
    return _update_one(engine, job_id, ACTIVE_STATUSES, owner=runner_id, **values)


def complete(
    engine: Engine,
    job_id: str,
    runner_id: str,
    *,
    output_data: dict[str, Any],
    console_output: str | None,
) -> Row[Any] | None:
    """claimed/in_progress -> completed with its result (claimer only)."""
    now = now_ms()
    values: dict[str, Any] = {
        "status": JobStatus.COMPLETED.value,
        "output_data": output_data,
        "finished_at": now,
        "updated_at": now,
        "error_message": None,
    }
    if console_output is not None:
        values["console_output"] = console_output
    return _update_one(engine, job_id, ACTIVE_STATUSES, owner=runner_id, **values)


def fail(
    engine: Engine, job_id: str, runner_id: str, *, error_message: str, console_output: str | None
) -> Row[Any] | None:
    """claimed/in_progress -> failed with its error (claimer only)."""
    now = now_ms()
    values: dict[str, Any] = {
        "status": JobStatus.FAILED.value,
        "error_message": error_message,
        "finished_at": now,
        "updated_at": now,
    }
    if console_output is not None:
        values["console_output"] = console_output
    return _update_one(engine, job_id, ACTIVE_STATUSES, owner=runner_id, **values)


def release(engine: Engine, job_id: str, runner_id: str) -> Row[Any] | None:
    """claimed/in_progress -> pending, giving back the attempt (claimer only)."""
    return _update_one(
        engine,
        job_id,
        ACTIVE_STATUSES,
        owner=runner_id,
        status=JobStatus.PENDING.value,
        attempts=sa.case((JOBS.c.attempts > 0, JOBS.c.attempts - 1), else_=0),
        published_at=None,
        claimed_by=None,
        claimed_at=None,
        last_heartbeat=None,
    )


def reap(engine: Engine, *, heartbeat_timeout_s: float, max_attempts: int) -> ReapOutcome:
    """Stale claims -> pending while attempts remain, else failed ("timed out: ...")."""
    now = now_ms()
    cutoff = now - int(heartbeat_timeout_s * 1000)
    out_of_attempts = JOBS.c.attempts >= max_attempts
    statement = (
        sa.update(JOBS)
        .where(
            JOBS.c.status.in_([status.value for status in ACTIVE_STATUSES]),
            JOBS.c.last_heartbeat < cutoff,
        )
        .values(
            status=sa.case(
                (out_of_attempts, JobStatus.FAILED.value), else_=JobStatus.PENDING.value
            ),
            error_message=sa.case(
                (out_of_attempts, TIMED_OUT_MESSAGE.format(timeout_s=heartbeat_timeout_s)),
                else_=None,
            ),
            finished_at=sa.case((out_of_attempts, now), else_=None),
            claimed_by=sa.case((out_of_attempts, JOBS.c.claimed_by), else_=None),
            published_at=None,
            updated_at=now,
        )
        .returning(JOBS.c.id, JOBS.c.status)
    )
    with engine.begin() as conn:
        rows = conn.execute(statement).all()
    return ReapOutcome(
        requeued=[row.id for row in rows if row.status == JobStatus.PENDING.value],
        failed=[row.id for row in rows if row.status == JobStatus.FAILED.value],
    )


def mark_published(engine: Engine, job_ids: list[str], published: bool = True) -> None:
    """Record that a Celery message went out for these jobs (those still pending), or, with
    ``published=False``, that the message announced at submit could not be sent."""
    if not job_ids:
        return
    with engine.begin() as conn:
        conn.execute(
            sa.update(JOBS)
            .where(JOBS.c.id.in_(job_ids), JOBS.c.status == JobStatus.PENDING.value)
            .values(published_at=now_ms() if published else None)
        )


def expire(engine: Engine, job_id: str) -> Row[Any] | None:
    """completed -> expired, when its result is no longer valid."""
    return _update_one(engine, job_id, [JobStatus.COMPLETED], status=JobStatus.EXPIRED.value)


def delete(engine: Engine, job_ids: Iterable[str]) -> int:
    """Remove jobs whatever their state; returns how many existed."""
    ids = list(job_ids)
    if not ids:
        return 0
    with engine.begin() as conn:
        return conn.execute(sa.delete(JOBS).where(JOBS.c.id.in_(ids))).rowcount
