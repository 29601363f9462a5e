"""The job state machine (SPEC §2): the only code that writes a job's status.

One function per transition. Each is a single conditional statement (``UPDATE ... WHERE
status IN (...) [AND claimed_by = ...] RETURNING``), so of two racing callers exactly one
wins; the loser gets ``None`` (or ``False``) back, never an exception.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from runpack_tasks.errors import SubmitContended
from runpack_tasks.jobstore import queries
from runpack_tasks.jobstore.hashing import job_hash
from runpack_tasks.jobstore.models import (
    ACTIVE_STATUSES,
    JOBS,
    RESUBMITTABLE_STATUSES,
    JobRow,
    JobStatus,
    now_ms,
    time_ordered_ids,
)
from runpack_tasks.jobstore.statements import Statement, insert_rows

TIMED_OUT_MESSAGE = "timed out: no heartbeat for {timeout_s:g} s"
#: The error a cancelled job ends with.
CANCELLED_MESSAGE = "cancelled"
#: What ``cancel`` accepts: a job not finished yet.
CANCELLABLE_STATUSES = (JobStatus.PENDING, *ACTIVE_STATUSES)
#: What retention deletes: finished jobs.
FINISHED_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.EXPIRED)
#: Rows one retention statement deletes at most, so no statement holds its locks long.
RETENTION_BATCH = 1_000
_RESUBMITTABLE_VALUES = frozenset(status.value for status in RESUBMITTABLE_STATUSES)


@dataclass(frozen=True)
class SubmitOutcome:
    """What ``submit`` did: ``created`` and ``requeued`` tell the caller to publish."""

    job: JobRow
    created: bool
    requeued: bool
    #: The status a requeued job had (failed or expired); None unless ``requeued``.
    requeued_from: str | None = None

    @property
    def needs_publish(self) -> bool:
        """True for the one caller that made the job pending."""
        return self.created or self.requeued


@dataclass(frozen=True)
class ReapOutcome:
    """The stale claims ``reap`` returned to pending and those it failed."""

    requeued: list[str]
    failed: list[str]
    #: The job type of each requeued job (beat publishes them at once).
    requeued_types: dict[str, str] = field(default_factory=dict)


def _param(name: str) -> Any:
    return sa.bindparam(name, None)


def _keep_unless_given(column: str) -> Any:
    """``COALESCE(:column, column)``: the parameter when not None, else what is stored."""
    given = sa.bindparam(f"new_{column}", None, type_=JOBS.c[column].type)
    return sa.func.coalesce(given, JOBS.c[column])


def _unindexed(column: Any) -> Any:
    """The column's value in a form no index matches (NULL compares as '')."""
    return sa.func.coalesce(column, "")


def _async_commit() -> Any:
    """A condition that turns off ``synchronous_commit`` for the statement's own transaction
    (``set_config(..., is_local => true)`` in a one-row subquery, evaluated once): its
    COMMIT returns without waiting for the WAL to reach the disk."""
    setting = sa.select(
        sa.func.set_config(
            sa.literal_column("'synchronous_commit'"),
            sa.literal_column("'off'"),
            sa.true(),
        ).label("setting")
    ).subquery("async_commit")
    return setting.c.setting.is_not(None)


def _listed(name: str, dialect: str) -> Any:
    """``SELECT`` of the strings in the JSON array parameter ``name``."""
    given: Any = sa.bindparam(name, None)
    if dialect == "postgresql":
        return sa.select(sa.func.json_array_elements_text(sa.cast(given, sa.JSON)))
    return sa.select(sa.literal_column("value")).select_from(sa.func.json_each(given))


def _transition(
    allowed_from: Iterable[JobStatus],
    *,
    owner: bool,
    same_result: bool = False,
    durable: bool = True,
    many: bool = False,
    **values: Any,
) -> Statement:
    """``UPDATE jobs SET values WHERE id = :job_id AND status IN allowed_from
    [AND claimed_by = :runner_id] [AND finished_at = :finished_at] RETURNING *``; with
    ``many``, ``id IN :job_ids`` (a JSON array of ids) instead.

    ``durable=False`` commits asynchronously on PostgreSQL (see ``_async_commit``): the
    change is visible to every other statement at once, as any commit, and only a crash
    of the database server itself in the next few hundred milliseconds can undo it.
    """
    allowed = [status.value for status in allowed_from]

    def build(dialect: str) -> Any:
        # status and claimed_by are wrapped in coalesce so that only the primary key can
        # serve the lookup: a new worker's id, or a status rare when statistics were taken,
        # looks as selective as the id to PostgreSQL's planner, which then picked the
        # smaller (claimed_by, ...) or (status, ...) index and read every row it matched.
        key = JOBS.c.id.in_(_listed("job_ids", dialect)) if many else JOBS.c.id == _param("job_id")
        condition = [key, _unindexed(JOBS.c.status).in_(allowed)]
        if owner:
            condition.append(_unindexed(JOBS.c.claimed_by) == _param("runner_id"))
        if same_result:
            condition.append(JOBS.c.finished_at == _param("finished_at"))
        if not durable and dialect == "postgresql":
            condition.append(_async_commit())
        return sa.update(JOBS).where(*condition).values(**values).returning(*JOBS.c)

    return Statement(build)


#: What a run leaves on a job, cleared when it is resubmitted: every nullable column but
#: ``published_at``, which tracks the job's message, not its run.
_RUN_COLUMNS = tuple(
    column.name for column in JOBS.c if column.nullable and column.name != "published_at"
)
_RUN_CLEARED: dict[str, Any] = dict.fromkeys(_RUN_COLUMNS)
#: Inserts before ``submit`` gives up on a hash whose row is deleted each time it looks.
SUBMIT_ATTEMPTS = 3


#: The columns a new job is created with; the others start NULL.
_NEW_COLUMNS = (
    "id",
    "job_hash",
    "job_type",
    "input_params",
    "status",
    "created_at",
    "updated_at",
    "attempts",
    "published_at",
)
#: A job row's fields picked from a new job's inserted values (of ``_NEW_COLUMNS``) with one
#: NULL after them: the columns a new job is not given start NULL.
_NEW_ROW = operator.itemgetter(
    *(
        _NEW_COLUMNS.index(column.name) if column.name in _NEW_COLUMNS else len(_NEW_COLUMNS)
        for column in JOBS.c
    )
)


def _new_job(values: tuple[Any, ...]) -> JobRow:
    """The whole row of a job just created with ``values`` (of ``_NEW_COLUMNS``), as the
    table holds it: the database gives no column a default of its own."""
    return JobRow._make(_NEW_ROW((*values, None)))


_RESUBMIT = _transition(
    RESUBMITTABLE_STATUSES,
    owner=False,
    same_result=False,
    status=JobStatus.PENDING.value,
    attempts=0,
    published_at=_param("published"),
    updated_at=_param("now"),
    **_RUN_CLEARED,
)
#: A claim is not waited onto the disk: what it decides, who runs the job, is settled in
#: the database at once; a database crash that undid it leaves the job pending for beat to
#: publish again, and the claimer's reports refused. Its completion is durable.
_CLAIMED: dict[str, Any] = {
    "status": JobStatus.CLAIMED.value,
    "claimed_by": _param("runner_id"),
    "claimed_at": _param("now"),
    "last_heartbeat": _param("now"),
    "attempts": JOBS.c.attempts + 1,
    "updated_at": _param("now"),
}
_CLAIM = _transition([JobStatus.PENDING], owner=False, durable=False, **_CLAIMED)
_CLAIM_MANY = _transition([JobStatus.PENDING], owner=False, durable=False, many=True, **_CLAIMED)
_HEARTBEAT = _transition(
    ACTIVE_STATUSES,
    owner=True,
    status=JobStatus.IN_PROGRESS.value,
    last_heartbeat=_param("now"),
    updated_at=_param("now"),
    progress_current=_keep_unless_given("progress_current"),
    progress_total=_keep_unless_given("progress_total"),
    console_output=_keep_unless_given("console_output"),
)
#: What every completion sets the same way; its result comes with each.
_COMPLETED: dict[str, Any] = {
    "status": JobStatus.COMPLETED.value,
    "finished_at": _param("now"),
    "updated_at": _param("now"),
    "error_message": None,
}
_COMPLETE = _transition(
    ACTIVE_STATUSES,
    owner=True,
    output_data=_param("new_output_data"),
    console_output=_keep_unless_given("console_output"),
    cache_version=_param("new_cache_version"),
    **_COMPLETED,
)


def _reports(dialect: str) -> Any:
    """The rows of the JSON array parameter ``reports`` (objects with ``id``,
    ``output_data``, ``console_output``, ``cache_version``), as a table ``report``."""
    given: Any = sa.bindparam("reports", None)
    if dialect == "postgresql":
        return (
            sa.func.json_to_recordset(sa.cast(given, sa.JSON))
            .table_valued(
                sa.column("id", JOBS.c.id.type),
                sa.column("output_data", sa.JSON),
                sa.column("console_output", sa.Text),
                sa.column("cache_version", JOBS.c.cache_version.type),
            )
            .render_derived(name="report", with_types=True)
        )
    fields = ("id", "output_data", "console_output", "cache_version")
    return (
        sa.select(
            *(
                sa.literal_column(
                    f"value {'->' if name == 'output_data' else '->>'} '{name}'"
                ).label(name)
                for name in fields
            )
        )
        .select_from(sa.func.json_each(given))
        .subquery("report")
    )


def _complete_many(dialect: str) -> Any:
    """``_COMPLETE`` for several jobs of one runner, each with its own result: their ids
    come back for those it completed."""
    report = _reports(dialect)
    return (
        sa.update(JOBS)
        .where(
            JOBS.c.id == report.c.id,
            _unindexed(JOBS.c.status).in_([status.value for status in ACTIVE_STATUSES]),
            _unindexed(JOBS.c.claimed_by) == _param("runner_id"),
        )
        .values(
            output_data=report.c.output_data,
            console_output=sa.func.coalesce(report.c.console_output, JOBS.c.console_output),
            cache_version=report.c.cache_version,
            **_COMPLETED,
        )
        .returning(JOBS.c.id)
    )


_COMPLETE_MANY = Statement(_complete_many)
_FAIL = _transition(
    ACTIVE_STATUSES,
    owner=True,
    status=JobStatus.FAILED.value,
    error_message=_param("new_error_message"),
    finished_at=_param("now"),
    updated_at=_param("now"),
    console_output=_keep_unless_given("console_output"),
)
_RELEASE = _transition(
    ACTIVE_STATUSES,
    owner=True,
    status=JobStatus.PENDING.value,
    attempts=sa.case((JOBS.c.attempts > 0, JOBS.c.attempts - 1), else_=0),
    published_at=None,
    claimed_by=None,
    claimed_at=None,
    last_heartbeat=None,
    updated_at=_param("now"),
)
_CANCEL = _transition(
    CANCELLABLE_STATUSES,
    owner=False,
    status=JobStatus.FAILED.value,
    error_message=CANCELLED_MESSAGE,
    finished_at=_param("now"),
    updated_at=_param("now"),
)
_EXPIRE = _transition(
    [JobStatus.COMPLETED], owner=False, status=JobStatus.EXPIRED.value, updated_at=_param("now")
)
_EXPIRE_RESULT = _transition(
    [JobStatus.COMPLETED],
    owner=False,
    same_result=True,
    status=JobStatus.EXPIRED.value,
    updated_at=_param("now"),
)
#: Rows one statement of ``expire_matching`` expires at most, so none holds a long lock.
EXPIRE_BATCH = 1000


@dataclass(frozen=True)
class Submission:
    """One job to submit: ``digest`` is its ``job_hash``; ``publishing`` records, in the
    same write, that the caller will send its message (it calls ``mark_published`` with
    ``published=False`` if sending fails)."""

    job_type: str
    input_params: dict[str, Any]
    digest: str
    publishing: bool = False


def submit(
    engine: Engine,
    job_type: str,
    input_params: dict[str, Any],
    digest: str | None = None,
    publishing: bool = False,
) -> SubmitOutcome:
    """Create the job for this hash, requeue it if it failed or expired, or return it as is
    (``submit_many`` of one job; ``digest`` spares hashing again)."""
    digest = digest or job_hash(job_type, input_params)
    return submit_many(engine, [Submission(job_type, input_params, digest, publishing)])[0]


def submit_many(engine: Engine, submissions: Sequence[Submission]) -> list[SubmitOutcome]:
    """Submit jobs at once: what ``submit`` does for each, one outcome per submission in order.

    One multi-row ``INSERT ... ON CONFLICT (job_hash) DO NOTHING RETURNING`` creates the new
    ones, one read finds those that existed; of these, failed and expired ones are
    requeued, each by the single-winner ``resubmit``. A submission repeating an earlier
    one's hash gets that job as a submit right after it would (not created, not requeued).
    A row deleted between the insert that found it and the read of it is inserted again,
    up to ``SUBMIT_ATTEMPTS`` times; then ``SubmitContended`` is raised.
    """
    first: dict[str, Submission] = {}
    for submission in submissions:
        first.setdefault(submission.digest, submission)
    settled: dict[str, SubmitOutcome] = {}
    remaining = list(first.values())
    for _ in range(SUBMIT_ATTEMPTS):
        remaining = _submit_once(engine, remaining, settled)
        if not remaining:
            break
    else:
        raise SubmitContended(
            f"{len(remaining)} job(s) were deleted while being submitted, "
            f"{SUBMIT_ATTEMPTS} times; submit them again"
        )
    outcomes = []
    seen: set[str] = set()
    for submission in submissions:
        outcome = settled[submission.digest]
        if submission.digest in seen:
            outcome = SubmitOutcome(outcome.job, created=False, requeued=False)
        seen.add(submission.digest)
        outcomes.append(outcome)
    return outcomes


def _submit_once(
    engine: Engine,
    submissions: list[Submission],
    settled: dict[str, SubmitOutcome],
) -> list[Submission]:
    """One insert of every submission, then one read of the rows it conflicted with; the
    outcomes go into ``settled``; returns the submissions whose row vanished meanwhile.

    Rows go in in hash order: two writes whose jobs overlap then wait on each other's
    hashes in the same order, and never deadlock (PostgreSQL's unique index locks each
    hash a write inserts until it commits)."""
    now = now_ms()
    ordered = sorted(submissions, key=lambda submission: submission.digest)
    rows = [
        (
            job_id,
            submission.digest,
            submission.job_type,
            submission.input_params,
            JobStatus.PENDING.value,
            now,
            now,
            0,
            now if submission.publishing else None,
        )
        for job_id, submission in zip(time_ordered_ids(len(ordered), now), ordered, strict=True)
    ]
    created = set(insert_rows(engine, JOBS, _NEW_COLUMNS, rows, conflict="job_hash"))
    for row, submission in zip(rows, ordered, strict=True):
        if submission.digest in created:
            job = _new_job(row)
            settled[submission.digest] = SubmitOutcome(job, created=True, requeued=False)
    existed = [s for s in submissions if s.digest not in settled]
    found = queries.jobs_by_hashes(engine, [s.digest for s in existed]) if existed else {}
    vanished = []
    for submission in existed:
        outcome = _existing(engine, submission, found.get(submission.digest))
        if outcome is None:
            vanished.append(submission)
        else:
            settled[submission.digest] = outcome
    return vanished


def _existing(engine: Engine, submission: Submission, job: JobRow | None) -> SubmitOutcome | None:
    """The outcome for a job that existed: requeued when it failed or expired, else as
    found; None if the row is gone."""
    if job is not None and job.status in _RESUBMITTABLE_VALUES:
        requeued = resubmit(engine, job.id, publishing=submission.publishing)
        if requeued is not None:
            return SubmitOutcome(requeued, created=False, requeued=True, requeued_from=job.status)
        job = queries.job_by_hash(engine, submission.digest)
    return None if job is None else SubmitOutcome(job, created=False, requeued=False)


def resubmit(engine: Engine, job_id: str, publishing: bool = False) -> JobRow | None:
    """failed/expired -> pending, with a fresh attempt count and no old outcome."""
    now = now_ms()
    return queries.first_job(
        _RESUBMIT, engine, job_id=job_id, now=now, published=now if publishing else None
    )


def claim(engine: Engine, job_id: str, runner_id: str) -> JobRow | None:
    """pending -> claimed by ``runner_id``; counts one attempt."""
    return queries.first_job(_CLAIM, engine, job_id=job_id, runner_id=runner_id, now=now_ms())


def heartbeat(
    engine: Engine,
    job_id: str,
    runner_id: str,
    *,
    progress_current: float | None,
    progress_total: float | None,
    console_output: str | None,
) -> JobRow | None:
    """claimed/in_progress -> in_progress, recording progress and the log (claimer only);
    a value left None keeps what is stored."""
    return queries.first_job(
        _HEARTBEAT,
        engine,
        job_id=job_id,
        runner_id=runner_id,
        now=now_ms(),
        new_progress_current=progress_current,
        new_progress_total=progress_total,
        new_console_output=console_output,
    )


def complete(
    engine: Engine,
    job_id: str,
    runner_id: str,
    *,
    output_data: dict[str, Any],
    console_output: str | None,
    cache_version: str | None = None,
) -> JobRow | None:
    """claimed/in_progress -> completed with its result (claimer only), recording the
    ``cache_version`` of the plugin that computed it."""
    return queries.first_job(
        _COMPLETE,
        engine,
        job_id=job_id,
        runner_id=runner_id,
        now=now_ms(),
        new_output_data=output_data,
        new_console_output=console_output,
        new_cache_version=cache_version,
    )


@dataclass(frozen=True)
class Completion:
    """One finished run's result, for ``complete_many``."""

    job_id: str
    output_data: dict[str, Any]
    console_output: str | None
    cache_version: str | None = None


def claim_many(engine: Engine, job_ids: Sequence[str], runner_id: str) -> list[JobRow | None]:
    """``claim`` of each job, in one statement: the claimed row in each one's place, None
    where it was not pending (or was listed before, so each claim has one winner)."""
    if len(job_ids) == 1:
        return [claim(engine, job_ids[0], runner_id)]
    rows = _CLAIM_MANY.run(
        engine, {"job_ids": list(job_ids), "runner_id": runner_id, "now": now_ms()}
    )
    claimed = {job.id: job for job in map(JobRow._make, rows)}
    return [claimed.pop(job_id, None) for job_id in job_ids]


def complete_many(engine: Engine, runner_id: str, results: Sequence[Completion]) -> list[bool]:
    """``complete`` of each job with its own result, in one statement: True in the place
    of each one it completed (a job listed twice is completed by its first)."""
    if len(results) == 1:
        only = results[0]
        done = complete(
            engine,
            only.job_id,
            runner_id,
            output_data=only.output_data,
            console_output=only.console_output,
            cache_version=only.cache_version,
        )
        return [done is not None]
    firsts = {result.job_id: result for result in reversed(results)}
    reports = [
        {
            "id": result.job_id,
            "output_data": result.output_data,
            "console_output": result.console_output,
            "cache_version": result.cache_version,
        }
        for result in firsts.values()
    ]
    rows = _COMPLETE_MANY.run(engine, {"reports": reports, "runner_id": runner_id, "now": now_ms()})
    completed = {row[0] for row in rows}
    return [result.job_id in completed and firsts[result.job_id] is result for result in results]


def fail(
    engine: Engine, job_id: str, runner_id: str, *, error_message: str, console_output: str | None
) -> JobRow | None:
    """claimed/in_progress -> failed with its error (claimer only)."""
    return queries.first_job(
        _FAIL,
        engine,
        job_id=job_id,
        runner_id=runner_id,
        now=now_ms(),
        new_error_message=error_message,
        new_console_output=console_output,
    )


def release(engine: Engine, job_id: str, runner_id: str) -> JobRow | None:
    """claimed/in_progress -> pending, giving back the attempt (claimer only)."""
    return queries.first_job(_RELEASE, engine, job_id=job_id, runner_id=runner_id, now=now_ms())


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
        .returning(JOBS.c.id, JOBS.c.status, JOBS.c.job_type)
    )
    with engine.begin() as conn:
        rows = conn.execute(statement).all()
    requeued = [row for row in rows if row.status == JobStatus.PENDING.value]
    return ReapOutcome(
        requeued=[row.id for row in requeued],
        failed=[row.id for row in rows if row.status == JobStatus.FAILED.value],
        requeued_types={row.id: row.job_type for row in requeued},
    )


def mark_published(
    engine: Engine, job_ids: list[str], published: bool = True, *, marked_by: int | None = None
) -> None:
    """Record that a Celery message went out for these jobs, or, with ``published=False``,
    that the message announced at submit could not be sent.

    A sent message is recorded whatever the job's status: a worker may have claimed, even
    finished, the job before this write. A failed send clears the mark of the jobs still
    pending, and with ``marked_by`` (epoch ms: when the failed send began) only a mark
    made by then: a later one is another sender's (beat's), whose message did go out.
    """
    if not job_ids:
        return
    unsent: list[Any] = []
    if not published:
        unsent.append(JOBS.c.status == JobStatus.PENDING.value)
        if marked_by is not None:
            unsent.append(JOBS.c.published_at <= marked_by)
    with engine.begin() as conn:
        conn.execute(
            sa.update(JOBS)
            .where(JOBS.c.id.in_(job_ids), *unsent)
            .values(published_at=now_ms() if published else None)
        )


def expire(engine: Engine, job_id: str, finished_at: int | None = None) -> JobRow | None:
    """completed -> expired, when its result is no longer valid.

    With ``finished_at``, only the result that finished then: a caller that judged one
    result never expires the next one, computed after a requeue it raced with.
    """
    if finished_at is None:
        return queries.first_job(_EXPIRE, engine, job_id=job_id, now=now_ms())
    return queries.first_job(
        _EXPIRE_RESULT, engine, job_id=job_id, finished_at=finished_at, now=now_ms()
    )


def expire_matching(
    engine: Engine,
    *,
    job_type: str | None = None,
    cache_version: str | None = None,
    finished_before: int | None = None,
) -> int:
    """Completed jobs matching every filter given -> expired, at most ``EXPIRE_BATCH`` rows
    per statement; returns how many. At least one filter is required."""
    filters = [JOBS.c.status == JobStatus.COMPLETED.value]
    if job_type is not None:
        filters.append(JOBS.c.job_type == job_type)
    if cache_version is not None:
        filters.append(JOBS.c.cache_version == cache_version)
    if finished_before is not None:
        filters.append(JOBS.c.finished_at < finished_before)
    if len(filters) == 1:
        raise ValueError("expire_matching needs at least one filter")
    batch = sa.select(JOBS.c.id).where(*filters).limit(EXPIRE_BATCH).scalar_subquery()
    expired = 0
    while True:
        statement = (
            sa.update(JOBS)
            .where(JOBS.c.id.in_(batch), JOBS.c.status == JobStatus.COMPLETED.value)
            .values(status=JobStatus.EXPIRED.value, updated_at=now_ms())
            .returning(JOBS.c.id)
        )
        with engine.begin() as conn:
            count = len(conn.execute(statement).all())
        expired += count
        if count == 0:  # not "< EXPIRE_BATCH": a batch shrinks when rows change meanwhile
            return expired


def cancel(engine: Engine, job_id: str) -> JobRow | None:
    """pending/claimed/in_progress -> failed ("cancelled"), whoever holds it; the claimer's
    later reports find the job no longer active and are refused. ``claimed_by`` is kept,
    so the caller can tell the claimer to stop."""
    return queries.first_job(_CANCEL, engine, job_id=job_id, now=now_ms())


def retention_statement(
    status: JobStatus, cutoff_ms: int, limit: int = RETENTION_BATCH, *, unfinished: bool = False
) -> Any:
    """``DELETE FROM jobs WHERE id IN (SELECT id ... LIMIT limit)``: jobs in a finished
    ``status`` whose ``finished_at`` is before ``cutoff_ms`` (with ``unfinished``: whose
    ``finished_at`` is NULL and ``updated_at`` before it). The select reads
    ix_jobs_status_finished."""
    if status not in FINISHED_STATUSES:
        raise ValueError(f"retention never deletes {status.value} jobs")
    in_status = JOBS.c.status == status.value
    age = (
        sa.and_(JOBS.c.finished_at.is_(None), JOBS.c.updated_at < cutoff_ms)
        if unfinished
        else JOBS.c.finished_at < cutoff_ms
    )
    ids = sa.select(JOBS.c.id).where(in_status, age).limit(limit)
    # checked again on the row deleted: a job resubmitted since the select read it is
    # pending (or finished again, recently), and stays
    return sa.delete(JOBS).where(JOBS.c.id.in_(ids), in_status, age)


def delete_finished(
    engine: Engine,
    status: JobStatus,
    cutoff_ms: int,
    limit: int = RETENTION_BATCH,
    *,
    unfinished: bool = False,
) -> int:
    """Retention (SPEC §8): delete up to ``limit`` jobs in a finished ``status`` that
    finished before ``cutoff_ms`` (see ``retention_statement``); returns how many. A
    pending or running job is never deleted."""
    statement = retention_statement(status, cutoff_ms, limit, unfinished=unfinished)
    with engine.begin() as conn:
        return int(conn.execute(statement).rowcount)


def delete(engine: Engine, job_ids: Iterable[str]) -> set[str]:
    """Remove jobs whatever their state; returns the ids of those that existed."""
    ids = list(job_ids)
    if not ids:
        return set()
    with engine.begin() as conn:
        removed = conn.execute(sa.delete(JOBS).where(JOBS.c.id.in_(ids)).returning(JOBS.c.id))
        return set(removed.scalars())
