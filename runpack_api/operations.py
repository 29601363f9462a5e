"""The work behind ``/api/jobs`` once a request passed its gate: limits, cache keys, answers.

A single submit and a batch take the same pipeline: the cache lookup, the checks of a
body (``_accepted``), one write for all (``_store``, through ``lifecycle.submit_many``), the
judgment of stored results (``_judged``, asking ``judge``), and the answers
(``_submitted``).

A completed result does not change while it is valid, so its encoded answer is kept in the
process's ResultCache under ``(route, job hash or id)`` for as long as it stays valid: a
cache hit costs a hash and a lookup, not a database round trip. Every answer is a schema
model, encoded once.

A completed result read from the table is judged (``validity``) before it is served; an
invalid one is expired there and then: a submit requeues it in the same request, check and
status answer ``expired``. Every answer that serves a result counts the compute it saved.
"""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from fastapi.exceptions import RequestValidationError
from orjson import Fragment
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from runner_plugins import InvalidParams
from runpack_api import presenters
from runpack_api.errors import validation_message
from runpack_api.grouping import GroupCommit
from runpack_api.jsonbody import encode, raw_json_response, validated
from runpack_api.runtime import Runtime
from runpack_api.schemas import JobRequest, StatusBatchRequest
from runpack_api.validity import Verdict, run_time_s
from runpack_tasks.errors import InvalidRequest, JobNotFound, RunpackError, SubmitContended
from runpack_tasks.jobstore import lifecycle, queries
from runpack_tasks.jobstore.hashing import job_hash
from runpack_tasks.jobstore.lifecycle import Submission, SubmitOutcome
from runpack_tasks.jobstore.models import JobRow, JobStatus
from runpack_tasks.jobstore.payloads import check_json, refuse_nul

CacheKey = tuple[str, str]
#: Group commit of single submits (grouping.py): writes at once on PostgreSQL, where two
#: overlapping writers kept the p99 of new-job submits lower than one (SQLite takes one
#: writer at a time anyway).
GROUP_WRITERS = 2
#: Judgments of one job's stored result a submit makes at most: an unservable result it
#: expired may have been recomputed by the time it looks again, and that one is judged too.
MAX_JUDGED = 3


def _shaped_digest(document: Any) -> str | None:
    """The hash of a body shaped like a job (a string type, an object of parameters), to
    look its answer up before the body is validated; None for any other body, or one that
    cannot be hashed (validation and the limits then say why). Only a valid job's answer is
    ever kept, and a job is its hash, so a hit means the body would validate."""
    if not isinstance(document, dict):
        return None
    job_type, params = document.get("job_type"), document.get("input_params")
    if not isinstance(job_type, str) or not isinstance(params, dict):
        return None
    try:
        return job_hash(job_type, params)
    except (ValueError, RecursionError):
        return None


def _job(runtime: Runtime, document: Any, digest: str | None) -> tuple[JobRequest, str]:
    """A body that missed the cache, validated and within the limits, and its hash."""
    job = validated(JobRequest, document)
    check_json("input_params", job.input_params, runtime.settings.max_input_bytes)
    if digest is None:
        try:
            digest = job_hash(job.job_type, job.input_params)
        except ValueError as exc:
            raise InvalidRequest(f"input_params {exc}") from None
    return job, digest


def _validate_params(runtime: Runtime, job: JobRequest) -> None:
    """Run the plugin's parameter validation where this host knows the plugin."""
    plugin = runtime.plugins.get(job.job_type)
    if plugin is None:
        return
    try:
        plugin.validate(job.input_params)
    except InvalidParams as exc:
        raise InvalidRequest(f"input_params for {job.job_type}: {exc}") from None


def _accepted(runtime: Runtime, document: Any, digest: str | None) -> tuple[JobRequest, str]:
    """A submitted body that missed the cache, checked as every submit is (validation,
    limits, the plugin's parameter validation), and its hash."""
    job, digest = _job(runtime, document, digest)
    _validate_params(runtime, job)
    return job, digest


async def judge(runtime: Runtime, job: JobRow) -> Verdict:
    """Whether this completed job's result may be served now (SPEC §8): the one point where
    every path (single and batch submit, check, status) judges a stored result."""
    return await runtime.validity.judge(job, runtime.plugins.get(job.job_type))


def cache_keys(job: JobRow) -> tuple[CacheKey, ...]:
    """Every key under which this job's answer may be kept."""
    return ("submit", job.job_hash), ("check", job.job_hash), ("status", job.id)


def _keep(runtime: Runtime, key: CacheKey, job: JobRow, encoded: bytes, verdict: Verdict) -> None:
    """Keep a completed job's answer, judged valid, for as long as it stays valid."""
    runtime.results.put(
        key,
        encoded,
        job_type=job.job_type,
        run_time_s=run_time_s(job),
        valid_for_s=verdict.valid_for_s,
    )


@dataclass(frozen=True)
class Stored:
    """What a submit did: its outcome, whether the sender thread is to publish the job, and
    (for a pending job, else None) whether an active runner or worker serves its type."""

    outcome: SubmitOutcome
    publishing: bool
    served: bool | None


def _store(runtime: Runtime, jobs: list[tuple[JobRequest, str]]) -> list[Stored]:
    """Submit the jobs in one write, announcing in it the messages of the types a Celery
    worker serves; one ``Stored`` per job, in order."""
    served = runtime.publisher.served.get()
    outcomes = lifecycle.submit_many(
        runtime.engine,
        [
            Submission(job.job_type, job.input_params, digest, job.job_type in served.celery)
            for job, digest in jobs
        ],
    )
    return [
        Stored(
            outcome,
            outcome.needs_publish and job.job_type in served.celery,
            served=job.job_type in served.any if outcome.job.status == JobStatus.PENDING else None,
        )
        for (job, _), outcome in zip(jobs, outcomes, strict=True)
    ]


def _expire_one(runtime: Runtime, job: JobRow) -> JobRow | None:
    """Expire the result that was judged invalid; the job as it is now (another request
    may have expired, requeued or even recomputed it meanwhile). Only the very result
    judged is expired (told apart by ``finished_at``), never one recomputed since."""
    expired = lifecycle.expire(runtime.engine, job.id, finished_at=job.finished_at)
    return expired or queries.job_by_id(runtime.engine, job.id)


def _expire(runtime: Runtime, jobs: list[JobRow]) -> None:
    """Expire the results judged invalid."""
    for job in jobs:
        lifecycle.expire(runtime.engine, job.id, finished_at=job.finished_at)


@dataclass(frozen=True)
class Judged:
    """A stored submit after judgment: the verdict on its completed result (None when it
    has none), and why an earlier result of the job was expired by this request."""

    done: Stored
    verdict: Verdict | None = None
    expired: str | None = None


async def _judged(
    runtime: Runtime, jobs: list[tuple[JobRequest, str]], stored: list[Stored]
) -> list[Judged]:
    """``stored`` with every completed result judged (``judge``): those judged invalid are
    expired, then submitted again in one write, which requeues them (of concurrent
    requests doing this, exactly one requeues each job). A result recomputed and judged
    invalid again ``MAX_JUDGED`` times running is a 503."""
    judged = [Judged(done) for done in stored]
    for attempt in range(MAX_JUDGED + 1):
        completed = [
            index
            for index, item in enumerate(judged)
            if item.done.outcome.job.status == JobStatus.COMPLETED
        ]
        if not completed:  # a new or pending job has nothing to judge (gather costs 4 us)
            return judged
        verdicts = await asyncio.gather(
            *(judge(runtime, judged[index].done.outcome.job) for index in completed)
        )
        stale = []
        for index, verdict in zip(completed, verdicts, strict=True):
            if verdict.valid:
                judged[index] = Judged(judged[index].done, verdict, judged[index].expired)
            else:
                judged[index] = Judged(judged[index].done, None, verdict.reason)
                stale.append(index)
        if not stale:
            return judged
        if attempt == MAX_JUDGED:
            break
        rows = [judged[index].done.outcome.job for index in stale]
        for job in rows:
            runtime.results.discard(*cache_keys(job))
        await run_in_threadpool(_expire, runtime, rows)
        again = await run_in_threadpool(_store, runtime, [jobs[index] for index in stale])
        for index, done in zip(stale, again, strict=True):
            judged[index] = Judged(done, None, judged[index].expired)
    raise SubmitContended("the job's result was recomputed and expired again while read")


async def served(runtime: Runtime, job: JobRow | None) -> tuple[JobRow | None, Verdict | None]:
    """The job as it may be answered by check and status: a completed result judged valid
    (with its verdict), or, judged invalid, expired here and then. Never requeues."""
    for attempt in range(MAX_JUDGED + 1):
        if job is None or job.status != JobStatus.COMPLETED:
            return job, None
        if attempt == MAX_JUDGED:
            break
        verdict = await judge(runtime, job)
        if verdict.valid:
            return job, verdict
        runtime.results.discard(*cache_keys(job))
        job = await run_in_threadpool(_expire_one, runtime, job)
    raise SubmitContended("the job's result was recomputed and expired again while read")


def _submit_group(runtime: Runtime) -> GroupCommit[tuple[JobRequest, str], Stored]:
    """The group commit concurrent single submits of this process share (``_store``)."""
    if runtime.submit_group is None:
        sqlite = runtime.engine.dialect.name == "sqlite"
        runtime.submit_group = GroupCommit(
            partial(_store, runtime),
            max_writers=1 if sqlite else GROUP_WRITERS,
        )
    return runtime.submit_group


def _submitted(runtime: Runtime, judged: list[Judged]) -> list[bytes]:
    """The encoded answer of each stored submit; completed answers are kept in the
    ResultCache, jobs made pending wake this process's long polls and go to the
    publisher's thread (a slow broker never delays the client)."""
    answers = []
    announced = []
    woke: Counter[str] = Counter()
    counted: Counter[tuple[str, bool]] = Counter()
    for item in judged:
        done = item.done
        outcome, job = done.outcome, done.outcome.job
        hit = item.verdict is not None
        counted[job.job_type, hit] += 1
        answer = encode(
            presenters.submitted(
                job,
                created=outcome.created,
                requeued=outcome.requeued,
                served=done.served,
                expired=item.expired,
                requeued_from=outcome.requeued_from,
            )
        )
        if item.verdict is not None:
            runtime.metrics.saved(job.job_type, run_time_s(job))
            _keep(runtime, ("submit", job.job_hash), job, answer, item.verdict)
        if outcome.needs_publish:
            woke[job.job_type] += 1
        if done.publishing:
            announced.append((job.id, job.job_type))
        answers.append(answer)
    for (job_type, cache_hit), count in counted.items():
        runtime.metrics.submitted(job_type, cache_hit=cache_hit, count=count)
    for job_type, count in woke.items():
        runtime.pending.notify(job_type, count)
    if announced:
        runtime.publisher.announce_many(announced)
    return answers


def _cached_submit(runtime: Runtime, document: Any, digest: str | None) -> bytes | None:
    """The kept answer to submitting this body, counted as a cache hit."""
    if digest is None or (cached := runtime.results.get(("submit", digest))) is None:
        return None
    runtime.metrics.submitted(document["job_type"], cache_hit=True)
    runtime.metrics.saved(cached.job_type, cached.run_time_s)
    return cached.body


async def submit(runtime: Runtime, document: Any) -> Response:
    """Create the job, or answer the existing one (with its result when completed and
    valid); a failed or expired job, or one whose result is no longer valid, is requeued.
    201 when this call created it."""
    digest = _shaped_digest(document)
    if (cached := _cached_submit(runtime, document, digest)) is not None:
        return raw_json_response(cached)
    accepted = _accepted(runtime, document, digest)
    [item] = await _judged(runtime, [accepted], [await _submit_group(runtime).submit(accepted)])
    [answer] = _submitted(runtime, [item])
    return raw_json_response(answer, 201 if item.done.outcome.created else 200)


def _batch_documents(runtime: Runtime, document: Any) -> list[Any]:
    """The jobs of a batch body, 1 to ``max_batch_jobs`` of them."""
    jobs = document.get("jobs") if isinstance(document, dict) else None
    if not isinstance(jobs, list):
        raise InvalidRequest('the body must be {"jobs": [{"job_type", "input_params"}, ...]}')
    most = runtime.settings.max_batch_jobs
    if not 1 <= len(jobs) <= most:
        raise InvalidRequest(f"jobs: a batch holds 1 to {most} jobs, not {len(jobs)}")
    return jobs


def _batch_item(
    runtime: Runtime, index: int, document: Any, digest: str | None
) -> tuple[JobRequest, str]:
    """One job of a batch, checked as a single submit; its error names its index."""
    try:
        return _accepted(runtime, document, digest)
    except RequestValidationError as exc:
        raise InvalidRequest(f"jobs[{index}]: {validation_message(exc)}") from None
    except RunpackError as exc:
        refused = copy.copy(exc)
        refused.message = f"jobs[{index}]: {exc.message}"
        raise refused from None


def _with_created(answer: bytes, created: bool) -> Fragment:
    """A single submit's encoded answer (a JSON object) with ``created`` added."""
    return Fragment(answer[:-1] + (b',"created":true}' if created else b',"created":false}'))


async def submit_batch(runtime: Runtime, document: Any) -> Response:
    """Submit every job of the batch as ``submit`` would, in one write: answers in order,
    each with ``created``. Every job is checked before any is stored, so one bad job
    refuses the batch (its index named) and nothing is created."""
    documents = _batch_documents(runtime, document)
    answers: list[Fragment | None] = []
    misses: list[tuple[JobRequest, str]] = []
    for index, item in enumerate(documents):
        digest = _shaped_digest(item)
        cached = _cached_submit(runtime, item, digest)
        answers.append(None if cached is None else _with_created(cached, False))
        if cached is None:
            misses.append(_batch_item(runtime, index, item, digest))
    if misses:
        stored = await _judged(runtime, misses, await run_in_threadpool(_store, runtime, misses))
        fresh = iter(
            _with_created(answer, item.done.outcome.created)
            for item, answer in zip(stored, _submitted(runtime, stored), strict=True)
        )
        answers = [answer if answer is not None else next(fresh) for answer in answers]
    return raw_json_response(orjson.dumps({"results": answers}))


async def check(runtime: Runtime, document: Any) -> Response:
    """Whether the job exists, with its result (while valid) or error; never creates or
    requeues."""
    digest = _shaped_digest(document)
    if digest is not None and (cached := runtime.results.get(("check", digest))) is not None:
        runtime.metrics.saved(cached.job_type, cached.run_time_s)
        return raw_json_response(cached.body)
    key = ("check", _job(runtime, document, digest)[1])
    found = await run_in_threadpool(queries.job_by_hash, runtime.engine, key[1])
    stored, verdict = await served(runtime, found)
    answer = encode(presenters.checked(stored))
    if stored is not None and verdict is not None:
        runtime.metrics.saved(stored.job_type, run_time_s(stored))
        _keep(runtime, key, stored, answer, verdict)
    return raw_json_response(answer)


async def _status_answer(runtime: Runtime, found: JobRow) -> bytes | None:
    """A job's encoded status (its result judged first), kept in the ResultCache while
    its result is valid; None when the job is gone meanwhile."""
    job, verdict = await served(runtime, found)
    if job is None:
        return None
    answer = encode(presenters.job_status(job))
    if verdict is not None:
        _keep(runtime, ("status", job.id), job, answer, verdict)
    return answer


async def status(runtime: Runtime, job_id: str) -> Response:
    """A job's status, progress, and result (while valid) or error."""
    try:
        refuse_nul(job_id)
    except ValueError as exc:
        raise InvalidRequest(f"job_id {exc}") from None
    if (cached := runtime.results.get(("status", job_id))) is not None:
        return raw_json_response(cached.body)
    stored = await run_in_threadpool(queries.job_by_id, runtime.engine, job_id)
    answer = None if stored is None else await _status_answer(runtime, stored)
    if answer is None:
        raise JobNotFound(f"no job with id {job_id}")
    return raw_json_response(answer)


async def status_batch(runtime: Runtime, document: Any) -> Response:
    """The status of each job id, in order (``null`` for an unknown id), in one read."""
    job_ids = validated(StatusBatchRequest, document).job_ids
    most = runtime.settings.max_batch_jobs
    if not 1 <= len(job_ids) <= most:
        raise InvalidRequest(f"job_ids: 1 to {most} ids at once, not {len(job_ids)}")
    answers: dict[str, bytes | None] = {}
    for job_id in job_ids:
        entry = runtime.results.get(("status", job_id))
        answers[job_id] = None if entry is None else entry.body
    missed = [job_id for job_id, answer in answers.items() if answer is None]
    if missed:
        found = await run_in_threadpool(queries.jobs_by_ids, runtime.engine, missed)
        for job_id, job in found.items():
            answers[job_id] = await _status_answer(runtime, job)
    return raw_json_response(
        orjson.dumps(
            {"results": [None if (a := answers.get(i)) is None else Fragment(a) for i in job_ids]}
        )
    )
