"""The work behind ``/api/jobs`` once a request passed its gate: limits, cache keys, answers.

Completed results never change, so their encoded answers are kept in the process's
ResultCache under ``(route, job hash or id)``: a cache hit costs a hash and a lookup, not a
database round trip. Every answer is a schema model, encoded once.

A completed result read from the table is judged (``validity``) before it is served; an
invalid one is expired there and then: a submit requeues it in the same request, check and
status answer ``expired``. Every answer that serves a result counts the compute it saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from runner_plugins import InvalidParams
from runpack_api import presenters
from runpack_api.jsonbody import encode, raw_json_response, validated
from runpack_api.runtime import Runtime
from runpack_api.schemas import JobRequest
from runpack_api.validity import Verdict, run_time_s
from runpack_tasks.errors import InvalidRequest, JobNotFound, SubmitContended
from runpack_tasks.jobstore import lifecycle, queries
from runpack_tasks.jobstore.hashing import job_hash
from runpack_tasks.jobstore.lifecycle import SubmitOutcome
from runpack_tasks.jobstore.models import JobRow, JobStatus
from runpack_tasks.jobstore.payloads import check_json, refuse_nul

CacheKey = tuple[str, str]
#: Results one request judges at most: a result it expired may have been recomputed by the
#: time it looks again (by the request that requeued it), and that one is judged too.
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


@dataclass(frozen=True)
class Stored:
    """What a submit did: its outcome, whether the sender thread is to publish the job, and
    (for a pending job, else None) whether an active runner or worker serves its type."""

    outcome: SubmitOutcome
    publishing: bool
    served: bool | None


def _store_submit(runtime: Runtime, job: JobRequest, digest: str) -> Stored:
    """Submit, announcing the message in the same write when a Celery worker serves the type."""
    served = runtime.publisher.served.get()
    publishing = job.job_type in served.celery
    outcome = lifecycle.submit(
        runtime.engine, job.job_type, job.input_params, digest, publishing=publishing
    )
    pending = outcome.job.status == JobStatus.PENDING
    return Stored(
        outcome,
        publishing and outcome.needs_publish,
        served=job.job_type in served.any if pending else None,
    )


def cache_keys(job: JobRow) -> tuple[CacheKey, ...]:
    """Every key under which this job's answer may be kept."""
    return ("submit", job.job_hash), ("check", job.job_hash), ("status", job.id)


def _kept(
    runtime: Runtime, key: CacheKey, job: JobRow, encoded: bytes, verdict: Verdict | None
) -> Response:
    """The answer, kept in the ResultCache when the job is completed (and so was judged
    valid: ``verdict``), for as long as it stays valid."""
    if job.status == JobStatus.COMPLETED and verdict is not None:
        runtime.results.put(
            key,
            encoded,
            job_type=job.job_type,
            run_time_s=run_time_s(job),
            valid_for_s=verdict.valid_for_s,
        )
    return raw_json_response(encoded)


async def judge(runtime: Runtime, job: JobRow) -> Verdict:
    """Whether this completed job's result may be served now (SPEC §8)."""
    return await runtime.validity.judge(job, runtime.plugins.get(job.job_type))


def _expire(runtime: Runtime, job: JobRow) -> JobRow | None:
    """Expire the result that was judged invalid; the job as it is now (another request
    may have expired, requeued or even recomputed it meanwhile)."""
    expired = lifecycle.expire(runtime.engine, job.id, finished_at=job.finished_at)
    return expired or queries.job_by_id(runtime.engine, job.id)


async def served(runtime: Runtime, job: JobRow | None) -> tuple[JobRow | None, Verdict | None]:
    """The job as it may be answered: a completed result judged valid (with its verdict),
    or, judged invalid, expired here and then. Never requeues."""
    for judged in range(MAX_JUDGED + 1):
        if job is None or job.status != JobStatus.COMPLETED:
            return job, None
        if judged == MAX_JUDGED:
            break
        verdict = await judge(runtime, job)
        if verdict.valid:
            return job, verdict
        runtime.results.discard(*cache_keys(job))
        job = await run_in_threadpool(_expire, runtime, job)
    raise SubmitContended("the job's result was recomputed and expired again while read")


def _expire_and_store(runtime: Runtime, request: JobRequest, digest: str, job: JobRow) -> Stored:
    """Expire the result judged invalid, then submit again: of the requests that do this
    at once, exactly one requeues the job (and publishes it)."""
    _expire(runtime, job)
    return _store_submit(runtime, request, digest)


def _count_hit(runtime: Runtime, job: JobRow) -> None:
    runtime.metrics.saved(job.job_type, run_time_s(job))


async def submit(runtime: Runtime, document: Any) -> Response:
    """Create the job, or answer the existing one (with its result when completed and
    valid); a failed or expired job, or one whose result is no longer valid, is requeued.
    201 when this call created it."""
    digest = _shaped_digest(document)
    if digest is not None and (cached := runtime.results.get(("submit", digest))) is not None:
        runtime.metrics.submitted(document["job_type"], cache_hit=True)
        runtime.metrics.saved(cached.job_type, cached.run_time_s)
        return raw_json_response(cached.body)
    job, digest = _job(runtime, document, digest)
    key = ("submit", digest)
    _validate_params(runtime, job)
    done = await run_in_threadpool(_store_submit, runtime, job, digest)
    verdict, expiry = None, None
    for judged in range(MAX_JUDGED + 1):
        stored = done.outcome.job
        if stored.status != JobStatus.COMPLETED:
            break
        verdict = await judge(runtime, stored)
        if verdict.valid:
            break
        if judged == MAX_JUDGED:
            raise SubmitContended("the job's result was recomputed and expired again while read")
        expiry = verdict.reason
        runtime.results.discard(*cache_keys(stored))
        done = await run_in_threadpool(_expire_and_store, runtime, job, digest, stored)
    outcome, publishing = done.outcome, done.publishing
    hit = stored.status == JobStatus.COMPLETED
    runtime.metrics.submitted(job.job_type, cache_hit=hit)
    if hit:
        _count_hit(runtime, stored)
    answer = encode(
        presenters.submitted(
            stored,
            created=outcome.created,
            requeued=outcome.requeued,
            served=done.served,
            expired=expiry,
            requeued_from=outcome.requeued_from,
        )
    )
    if not outcome.needs_publish:
        return _kept(runtime, key, stored, answer, verdict)
    runtime.pending.notify(job.job_type)
    if publishing:  # sent by the publisher's thread: a slow broker never delays the client
        runtime.publisher.announce(stored.id, job.job_type)
    return raw_json_response(answer, 201 if outcome.created else 200)


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
    if stored is None:
        return raw_json_response(answer)
    if verdict is not None:
        _count_hit(runtime, stored)
    return _kept(runtime, key, stored, answer, verdict)


async def status(runtime: Runtime, job_id: str) -> Response:
    """A job's status, progress, and result (while valid) or error."""
    try:
        refuse_nul(job_id)
    except ValueError as exc:
        raise InvalidRequest(f"job_id {exc}") from None
    key = ("status", job_id)
    if (cached := runtime.results.get(key)) is not None:
        return raw_json_response(cached.body)
    found = await run_in_threadpool(queries.job_by_id, runtime.engine, job_id)
    stored, verdict = await served(runtime, found)
    if stored is None:
        raise JobNotFound(f"no job with id {job_id}")
    return _kept(runtime, key, stored, encode(presenters.job_status(stored)), verdict)
