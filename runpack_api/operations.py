"""The work behind ``/api/jobs`` once a request passed its gate: limits, cache keys, answers.

Completed results never change, so their encoded answers are kept in the process's
ResultCache under ``(route, job hash or id)``: a cache hit costs a hash and a lookup, not a
database round trip. Every answer is a schema model, encoded once.
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
from runpack_tasks.errors import InvalidRequest, JobNotFound
from runpack_tasks.jobstore import lifecycle, queries
from runpack_tasks.jobstore.hashing import job_hash
from runpack_tasks.jobstore.lifecycle import SubmitOutcome
from runpack_tasks.jobstore.models import JobRow, JobStatus
from runpack_tasks.jobstore.payloads import check_json, refuse_nul

CacheKey = tuple[str, str]


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


def _kept(runtime: Runtime, key: CacheKey, job: JobRow, encoded: bytes) -> Response:
    """The answer, kept in the ResultCache when the job is completed (it cannot change)."""
    if job.status == JobStatus.COMPLETED:
        runtime.results.put(key, encoded)
    return raw_json_response(encoded)


async def submit(runtime: Runtime, document: Any) -> Response:
    """Create the job, or answer the existing one (with its result when completed); a failed
    or expired job is requeued. 201 when this call created it."""
    digest = _shaped_digest(document)
    if digest is not None and (cached := runtime.results.get(("submit", digest))) is not None:
        runtime.metrics.submitted(document["job_type"], cache_hit=True)
        return raw_json_response(cached)
    job, digest = _job(runtime, document, digest)
    key = ("submit", digest)
    _validate_params(runtime, job)
    done = await run_in_threadpool(_store_submit, runtime, job, digest)
    outcome, publishing, stored = done.outcome, done.publishing, done.outcome.job
    runtime.metrics.submitted(job.job_type, cache_hit=stored.status == JobStatus.COMPLETED)
    answer = encode(
        presenters.submitted(
            stored, created=outcome.created, requeued=outcome.requeued, served=done.served
        )
    )
    if not outcome.needs_publish:
        return _kept(runtime, key, stored, answer)
    runtime.pending.notify(job.job_type)
    if publishing:  # sent by the publisher's thread: a slow broker never delays the client
        runtime.publisher.announce(stored.id, job.job_type)
    return raw_json_response(answer, 201 if outcome.created else 200)


async def check(runtime: Runtime, document: Any) -> Response:
    """Whether the job exists, with its result or error; never creates or requeues."""
    digest = _shaped_digest(document)
    if digest is not None and (cached := runtime.results.get(("check", digest))) is not None:
        return raw_json_response(cached)
    key = ("check", _job(runtime, document, digest)[1])
    stored = await run_in_threadpool(queries.job_by_hash, runtime.engine, key[1])
    answer = encode(presenters.checked(stored))
    return raw_json_response(answer) if stored is None else _kept(runtime, key, stored, answer)


async def status(runtime: Runtime, job_id: str) -> Response:
    """A job's status, progress, and result or error."""
    try:
        refuse_nul(job_id)
    except ValueError as exc:
        raise InvalidRequest(f"job_id {exc}") from None
    key = ("status", job_id)
    if (cached := runtime.results.get(key)) is not None:
        return raw_json_response(cached)
    stored = await run_in_threadpool(queries.job_by_id, runtime.engine, job_id)
    if stored is None:
        raise JobNotFound(f"no job with id {job_id}")
    return _kept(runtime, key, stored, encode(presenters.job_status(stored)))
