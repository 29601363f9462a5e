"""Client routes: submit a job, check for one, read its status.

Completed results never change, so their encoded bodies are kept in the process's
ResultCache: a cache hit costs a hash and a dictionary lookup, not a database round trip.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from runner_plugins import InvalidParams
from runpack_api import presenters
from runpack_api.deps import StatusRate, SubmitKey, SubmitRate
from runpack_api.jsonbody import OrjsonRoute, json_response, raw_json_response
from runpack_api.runtime import Runtime
from runpack_api.schemas import (
    CheckResponse,
    ErrorBody,
    JobRequest,
    JobStatusResponse,
    SubmitResponse,
)
from runpack_tasks.errors import InvalidRequest, JobNotFound
from runpack_tasks.jobstore import lifecycle, queries
from runpack_tasks.jobstore.hashing import job_hash
from runpack_tasks.jobstore.lifecycle import SubmitOutcome
from runpack_tasks.jobstore.models import JobStatus
from runpack_tasks.jobstore.payloads import check_json

router = APIRouter(
    route_class=OrjsonRoute,
    dependencies=[SubmitKey],
    responses={401: {"model": ErrorBody}, 429: {"model": ErrorBody}},
)


def _hash_request(body: JobRequest, runtime: Runtime, digest: str | None = None) -> str:
    """The job's hash (``digest`` when the caller has it), once its size is checked."""
    check_json("input_params", body.input_params, runtime.settings.max_input_bytes)
    if digest is not None:
        return digest
    try:
        return job_hash(body.job_type, body.input_params)
    except ValueError as exc:
        raise InvalidRequest(f"input_params {exc}") from None


def _submit(runtime: Runtime, body: JobRequest, digest: str) -> tuple[SubmitOutcome, bool]:
    """Submit, announcing the message in the same write when a Celery worker serves the type."""
    publishing = body.job_type in runtime.publisher.served_types()
    outcome = lifecycle.submit(
        runtime.engine, body.job_type, body.input_params, digest, publishing=publishing
    )
    return outcome, publishing and outcome.needs_publish


def _validate_params(body: JobRequest, runtime: Runtime) -> None:
    """Run the plugin's parameter validation where this host knows the plugin."""
    plugin = runtime.plugins.get(body.job_type)
    if plugin is None:
        return
    try:
        plugin.validate(body.input_params)
    except InvalidParams as exc:
        raise InvalidRequest(f"input_params for {body.job_type}: {exc}") from None


def _encode_completed(
    runtime: Runtime, key: tuple[str, str], body: dict[str, Any], status: str
) -> bytes:
    response = json_response(body)
    if status == JobStatus.COMPLETED.value:
        runtime.results.put(key, bytes(response.body))
    return bytes(response.body)


@router.post(
    "/submit",
    status_code=201,
    response_model=SubmitResponse,
    responses={
        200: {"model": SubmitResponse, "description": "The job existed"},
        400: {"model": ErrorBody},
        413: {"model": ErrorBody},
    },
)
async def submit_job(body: JobRequest, runtime: SubmitRate) -> Response:
    """Create a job, or return the existing one (with its result when completed).

    A failed or expired job is requeued. 201 when this call created the job. Parameters
    are validated by the job type's plugin when this API host has it installed.
    """
    return await submit(runtime, body)


async def submit(runtime: Runtime, body: JobRequest, digest: str | None = None) -> Response:
    """The submit route's work, once the key and rate limit are checked; ``digest`` is
    the job's hash when the caller computed it already (the fast path)."""
    digest = _hash_request(body, runtime, digest)
    if (cached := runtime.results.get(("submit", digest))) is not None:
        runtime.metrics.submitted(body.job_type, cache_hit=True)
        return raw_json_response(cached)
    _validate_params(body, runtime)
    outcome, publishing = await run_in_threadpool(_submit, runtime, body, digest)
    answer = presenters.submitted(outcome.job, created=outcome.created, requeued=outcome.requeued)
    runtime.metrics.submitted(
        body.job_type, cache_hit=outcome.job.status == JobStatus.COMPLETED.value
    )
    if outcome.needs_publish:
        runtime.pending.notify()
        if publishing:  # sent by the publisher's thread: a slow broker never delays the client
            runtime.publisher.announce(outcome.job.id, body.job_type)
        return json_response(answer, 201 if outcome.created else 200)
    return raw_json_response(
        _encode_completed(runtime, ("submit", digest), answer, outcome.job.status)
    )


@router.post(
    "/check",
    response_model=CheckResponse,
    responses={400: {"model": ErrorBody}, 413: {"model": ErrorBody}},
)
async def check_job(body: JobRequest, runtime: SubmitRate) -> Response:
    """Whether this job exists, with its result or error; never creates or requeues."""
    digest = _hash_request(body, runtime)
    if (cached := runtime.results.get(("check", digest))) is not None:
        return raw_json_response(cached)
    job = await run_in_threadpool(queries.job_by_hash, runtime.engine, digest)
    answer = presenters.checked(job)
    if job is None:
        return json_response(answer)
    return raw_json_response(_encode_completed(runtime, ("check", digest), answer, job.status))


@router.get(
    "/{job_id}",
    response_model=JobStatusResponse,
    responses={404: {"model": ErrorBody}},
)
async def job_status(job_id: str, runtime: StatusRate) -> Response:
    """A job's status, progress, and result or error."""
    if (cached := runtime.results.get(("status", job_id))) is not None:
        return raw_json_response(cached)
    job = await run_in_threadpool(queries.job_by_id, runtime.engine, job_id)
    if job is None:
        raise JobNotFound(f"no job with id {job_id}")
    return raw_json_response(
        _encode_completed(runtime, ("status", job_id), presenters.job_status(job), job.status)
    )
