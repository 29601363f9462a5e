"""HTTP runner routes: register, verify, find, claim, report on and release jobs, stop."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query
from sqlalchemy.engine import Row
from starlette.concurrency import run_in_threadpool

from runpack_api.deps import (
    EngineDep,
    RegisterRate,
    RunnerDep,
    RunnerKey,
    RunnerRate,
    RuntimeDep,
)
from runpack_api.jsonbody import OrjsonRoute
from runpack_api.params import PathId
from runpack_api.runtime import Runtime
from runpack_api.schemas import (
    MAX_CAPABILITIES,
    RATE_LIMITED,
    AvailableJob,
    AvailableResponse,
    ClaimedJob,
    ClaimResponse,
    CompleteRequest,
    ErrorBody,
    ErrorRequest,
    HeartbeatRequest,
    JobType,
    Outcome,
    RegisterRequest,
    RegisterResponse,
    VerifyResponse,
)
from runpack_tasks.errors import InvalidRequest, TransitionRejected
from runpack_tasks.jobstore import lifecycle, queries, runners
from runpack_tasks.jobstore.models import JobRow
from runpack_tasks.jobstore.payloads import check_json, check_text

router = APIRouter(
    route_class=OrjsonRoute,
    dependencies=[RunnerKey],
    responses={404: {"model": ErrorBody}},
)
REPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    409: {"model": Outcome, "description": "Not active, or not claimed by this runner"},
}
MAX_WAIT_S = 30.0


def _not_yours(what: str) -> TransitionRejected:
    return TransitionRejected(f"cannot {what}: the job is not active or not claimed by this runner")


@router.post("/register", status_code=201, response_model=RegisterResponse, responses=RATE_LIMITED)
async def register_runner(body: RegisterRequest, runtime: RegisterRate) -> Any:
    """Announce a runner and the job types it serves; returns its id."""
    runner_id = await run_in_threadpool(
        runners.register, runtime.engine, body.name, body.capabilities
    )
    runtime.publisher.served.forget()
    return RegisterResponse(runner_id=runner_id, message=f"Runner {body.name} registered")


@router.get("/verify", response_model=VerifyResponse)
async def verify_runner(runner: RunnerDep) -> Any:
    """Whether the server knows this runner id (404 when it does not)."""
    return VerifyResponse(exists=True, runner_name=runner.name, message="Runner is registered")


@router.post("/stop", response_model=Outcome)
async def stop_runner(runner: RunnerDep, runtime: RuntimeDep) -> Any:
    """The runner is shutting down: shown inactive until it speaks again."""
    runtime.runners.forget(runner.id)
    await run_in_threadpool(runners.stop, runtime.engine, runner.id)
    return Outcome(success=True, message=f"Runner {runner.name} stopped")


async def _poll(runtime: Runtime, job_types: list[str], wait_s: float) -> list[Row[Any]]:
    """The pending jobs of ``job_types``, waiting up to ``wait_s`` for one."""
    deadline = time.monotonic() + wait_s
    while True:
        # the table is read again only when woken: a waiting poll costs no query
        with runtime.pending.watching(job_types) as woken:
            if wait_s and runtime.pending.known_empty(job_types):
                jobs = []
            else:
                jobs = await run_in_threadpool(queries.available_jobs, runtime.engine, job_types)
            remaining = deadline - time.monotonic()
            if jobs or remaining <= 0 or not await woken.wait(remaining):
                break
    return jobs


@router.get("/jobs/available", response_model=AvailableResponse, responses=RATE_LIMITED)
async def available_jobs(
    runtime: RunnerRate,  # counted before the runner is looked up
    runner: RunnerDep,
    types_brackets: Annotated[
        list[JobType] | None, Query(alias="types[]", max_length=MAX_CAPABILITIES)
    ] = None,
    types: Annotated[list[JobType] | None, Query(max_length=MAX_CAPABILITIES)] = None,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S, description="Long poll, seconds")] = 0,
) -> Any:
    """Pending jobs of the given types (default: the runner's capabilities), oldest first.

    With ``wait``, answers as soon as one is pending, or empty after ``wait`` seconds;
    while this API process already holds RUNPACK_MAX_LONG_POLLS such waits, at once.
    """
    job_types = [*(types_brackets or []), *(types or [])] or list(runner.capabilities)
    if not job_types:
        raise InvalidRequest("no job types: pass types[]=... or register with capabilities")
    with runtime.long_polls.slot(wait) as granted_s:
        jobs = await _poll(runtime, job_types, granted_s)
    return AvailableResponse(
        jobs=[
            AvailableJob(
                job_id=job.id,
                job_type=job.job_type,
                input_params=job.input_params,
                created_at=job.created_at,
            )
            for job in jobs
        ]
    )


@router.post(
    "/jobs/{job_id}/claim",
    response_model=ClaimResponse,
    responses={409: {"model": Outcome, "description": "The job is not pending"}},
)
async def claim_job(job_id: PathId, runner: RunnerDep, engine: EngineDep) -> Any:
    """Take a pending job; of racing claimers exactly one gets 200."""
    job = await run_in_threadpool(lifecycle.claim, engine, job_id, runner.id)
    if job is None:
        raise TransitionRejected(
            "Job is not pending (claimed by another runner, finished, or unknown)"
        )
    return ClaimResponse(
        success=True,
        message="Job claimed",
        job=ClaimedJob(job_id=job.id, job_type=job.job_type, input_params=job.input_params),
    )


async def _report(
    runtime: Runtime, console: str | None, report: Callable[..., JobRow | None], action: str
) -> Outcome:
    """Apply a claimer-only transition with the report's console log (within its limit);
    409 if the job is not this runner's. ``action`` names it in the answer."""
    check_text("console_output", console, runtime.settings.max_console_bytes)
    if await run_in_threadpool(report, console_output=console) is None:
        raise _not_yours(action)
    return Outcome(success=True, message=REPORTED[action])


#: The answer's message for each report that was applied.
REPORTED = {
    "heartbeat": "Heartbeat recorded",
    "complete": "Job completed",
    "report an error for": "Job marked failed",
}


@router.post(
    "/jobs/{job_id}/heartbeat",
    response_model=Outcome,
    responses={**REPORT_RESPONSES, **RATE_LIMITED},
)
async def heartbeat_job(
    job_id: PathId, body: HeartbeatRequest, runtime: RunnerRate, runner: RunnerDep
) -> Any:
    """Report progress and the console log so far; keeps the claim alive."""
    report = functools.partial(
        lifecycle.heartbeat,
        runtime.engine,
        job_id,
        runner.id,
        progress_current=body.progress_current,
        progress_total=body.progress_total,
    )
    return await _report(runtime, body.console_output, report, "heartbeat")


@router.post("/jobs/{job_id}/complete", response_model=Outcome, responses=REPORT_RESPONSES)
async def complete_job(
    job_id: PathId, body: CompleteRequest, runner: RunnerDep, runtime: RuntimeDep
) -> Any:
    """Report a job's result; it becomes the cached answer for its hash."""
    check_json("output_data", body.output_data, runtime.settings.max_output_bytes)
    report = functools.partial(
        lifecycle.complete,
        runtime.engine,
        job_id,
        runner.id,
        output_data=body.output_data,
        cache_version=body.cache_version,
    )
    return await _report(runtime, body.console_output, report, "complete")


@router.post("/jobs/{job_id}/error", response_model=Outcome, responses=REPORT_RESPONSES)
async def fail_job(
    job_id: PathId, body: ErrorRequest, runner: RunnerDep, runtime: RuntimeDep
) -> Any:
    """Report that a job failed, and why."""
    check_text("error_message", body.error_message, runtime.settings.max_error_bytes)
    report = functools.partial(
        lifecycle.fail, runtime.engine, job_id, runner.id, error_message=body.error_message
    )
    return await _report(runtime, body.console_output, report, "report an error for")


@router.post("/jobs/{job_id}/release", response_model=Outcome, responses=REPORT_RESPONSES)
async def release_job(
    job_id: PathId, runner: RunnerDep, runtime: RuntimeDep, background: BackgroundTasks
) -> Any:
    """Give a claimed job back (runner shutting down); the attempt is not counted."""
    job = await run_in_threadpool(lifecycle.release, runtime.engine, job_id, runner.id)
    if job is None:
        raise _not_yours("release")
    runtime.pending.notify(job.job_type)
    background.add_task(runtime.publisher.publish_if_served, job.id, job.job_type)
    return Outcome(success=True, message="Job released back to pending")
