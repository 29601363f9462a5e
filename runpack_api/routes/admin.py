"""Admin routes: list and inspect jobs and runners, system stats, expire, cancel and delete
jobs."""

from __future__ import annotations

import functools
import logging
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query
from starlette.concurrency import run_in_threadpool

from runpack_api import presenters
from runpack_api.deps import AdminKey, AdminRate, AdminReadKey
from runpack_api.jsonbody import OrjsonRoute
from runpack_api.params import PageLimit, PageOffset, PathId
from runpack_api.schemas import (
    RATE_LIMITED,
    BatchDeleteRequest,
    BatchDeleteResponse,
    DeleteResponse,
    ErrorBody,
    ExpiredCount,
    ExpireRequest,
    ExpireResponse,
    JobCounts,
    JobDetail,
    JobList,
    JobType,
    JobTypeInfo,
    JobTypeList,
    MinuteCount,
    Outcome,
    RunnerCounts,
    RunnerDetail,
    RunnerList,
    Stats,
    SubmissionCounts,
    Throughput,
)
from runpack_tasks.cancel import revoke_job
from runpack_tasks.errors import InvalidRequest, JobNotFound, RunnerNotFound, TransitionRejected
from runpack_tasks.jobstore import lifecycle, queries
from runpack_tasks.jobstore.models import JobRow, JobStatus, RunnerKind, now_ms

router = APIRouter(
    route_class=OrjsonRoute,
    responses={404: {"model": ErrorBody}, **RATE_LIMITED},
)
log = logging.getLogger(__name__)
#: Runners listed when no ``limit`` is given.
RUNNER_PAGE = 100


def _active_since(runtime: Any) -> int:
    return now_ms() - int(runtime.settings.runner_active_s * 1000)


#: ``next_before``: the last job's ``created_at`` (epoch ms) and id.
CURSOR_PATTERN = r"^[0-9]{1,15}:[^\x00]{1,64}$"


def _cursor(before: str | None) -> tuple[int, str] | None:
    """``<created_at>:<job_id>`` (a page's ``next_before``) as (created_at, id)."""
    if before is None:
        return None
    created_at, _, job_id = before.partition(":")
    if not created_at.isdigit() or len(created_at) > 16 or not job_id:
        raise InvalidRequest("before must be a next_before value: <created_at>:<job_id>")
    return int(created_at), job_id


@router.get("/jobs", response_model=JobList, dependencies=[AdminReadKey])
async def list_jobs(
    runtime: AdminRate,
    status: JobStatus | None = None,
    job_type: JobType | None = None,
    limit: PageLimit = 50,
    offset: PageOffset = 0,
    before: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description="a page's next_before")
    ] = None,
) -> Any:
    """Jobs, newest first, filtered by status and type. Page with ``before`` (the previous
    page's ``next_before``): any page costs what the first does, where a large ``offset``
    reads every row before it."""
    cursor = _cursor(before)
    cached = runtime.counts.ttl_s > 0
    page = await run_in_threadpool(
        lambda: queries.list_jobs(
            runtime.engine,
            status=status,
            job_type=job_type,
            limit=limit,
            offset=offset,
            before=cursor,
            count=not cached,
        )
    )
    total = page.total
    if cached:
        total = await run_in_threadpool(runtime.counts.total, status and status.value, job_type)
    last = page.rows[-1] if len(page.rows) == limit else None
    return JobList(
        jobs=[presenters.job_summary(job) for job in page.rows],
        total=total,
        next_before=None if last is None else f"{last.created_at}:{last.id}",
    )


@router.get("/jobs/{job_id}", response_model=JobDetail, dependencies=[AdminReadKey])
async def job_detail(job_id: PathId, runtime: AdminRate) -> Any:
    """Everything stored about one job."""
    found = await run_in_threadpool(queries.job_with_runner_name, runtime.engine, job_id)
    if found is None:
        raise JobNotFound(f"no job with id {job_id}")
    return presenters.job_detail(*found)


@router.get("/runners", response_model=RunnerList, dependencies=[AdminReadKey])
async def list_runners(
    runtime: AdminRate,
    limit: PageLimit = RUNNER_PAGE,
    offset: PageOffset = 0,
) -> Any:
    """A page of runners and Celery workers, most recently seen first."""
    page = await run_in_threadpool(
        lambda: queries.list_runners(runtime.engine, limit=limit, offset=offset)
    )
    running = await run_in_threadpool(
        queries.running_jobs_by_runner, runtime.engine, [r.id for r in page.rows]
    )
    since = _active_since(runtime)
    return RunnerList(
        runners=[presenters.runner_listed(r, since, running.get(r.id)) for r in page.rows],
        total=page.total,
        limit=limit,
        offset=offset,
    )


@router.get("/runners/{runner_id}", response_model=RunnerDetail, dependencies=[AdminReadKey])
async def runner_detail(runner_id: PathId, runtime: AdminRate) -> Any:
    """One runner and the jobs it claimed most recently."""
    runner = await run_in_threadpool(queries.runner_by_id, runtime.engine, runner_id)
    if runner is None:
        raise RunnerNotFound(f"no runner with id {runner_id}")
    jobs = await run_in_threadpool(queries.recent_jobs_of_runner, runtime.engine, runner_id)
    return presenters.runner_detail(runner, _active_since(runtime), jobs)


@router.get("/stats", response_model=Stats, dependencies=[AdminReadKey])
async def stats(runtime: AdminRate) -> Any:
    """Jobs per state, and runners known and active."""
    by_type = await run_in_threadpool(runtime.counts.get)
    counts = dict.fromkeys(JobStatus, 0)
    for (_type, status), n in by_type.items():
        counts[JobStatus(status)] += n
    total, active = await run_in_threadpool(
        queries.runner_counts, runtime.engine, runtime.settings.runner_active_s
    )
    submitted, cache_hits = runtime.metrics.totals()
    return Stats(
        jobs=JobCounts(
            **{status.value: n for status, n in counts.items()}, total=sum(counts.values())
        ),
        runners=RunnerCounts(total=total, active=active),
        submissions=SubmissionCounts(total=submitted, cache_hits=cache_hits),
        compute_saved_s=runtime.metrics.compute_saved_s(),
    )


@router.get("/job-types", response_model=JobTypeList, dependencies=[AdminReadKey])
async def job_types(runtime: AdminRate) -> Any:
    """Plugins installed on this API host, and types an active runner serves."""
    served = (
        await run_in_threadpool(
            queries.job_types_served, runtime.engine, runtime.settings.runner_active_s
        )
    ).any
    known = [
        JobTypeInfo(
            name=name,
            version=plugin.version,
            description=plugin.description,
            params_schema=plugin.Params.model_json_schema() if plugin.Params else None,
            served=name in served,
        )
        for name, plugin in sorted(runtime.plugins.items())
    ]
    known += [
        JobTypeInfo(name=name, version=None, description="", params_schema=None, served=True)
        for name in sorted(served - set(runtime.plugins))
    ]
    return JobTypeList(job_types=known)


@router.get("/throughput", response_model=Throughput, dependencies=[AdminReadKey])
async def throughput(runtime: AdminRate, minutes: Annotated[int, Query(ge=1, le=1440)] = 60) -> Any:
    """Jobs completed per minute over the last ``minutes``, empty minutes included."""
    first = (now_ms() // 60_000 - minutes + 1) * 60_000
    counts = await run_in_threadpool(queries.completed_per_minute, runtime.engine, first)
    minutes_ms = [first + n * 60_000 for n in range(minutes)]
    return Throughput(
        per_minute=[MinuteCount(minute=m, completed=counts.get(m, 0)) for m in minutes_ms]
    )


def _stop_celery_task(runtime: Any, job: JobRow) -> None:
    """Have the Celery worker that claimed a cancelled job terminate its task."""
    runner = queries.runner_by_id(runtime.engine, job.claimed_by or "")
    if runner is None or runner.kind != RunnerKind.CELERY.value:
        return  # an HTTP runner learns it from the 409 of its next heartbeat
    try:
        revoke_job(runtime.publisher.app, job.id, runner.id)
    except Exception as exc:  # kombu raises transport-specific errors
        log.warning("job %s cancelled, but its worker could not be told: %s", job.id, exc)


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=Outcome,
    dependencies=[AdminKey],
    responses={409: {"model": ErrorBody, "description": "The job already finished"}},
)
async def cancel_job(job_id: PathId, runtime: AdminRate, background: BackgroundTasks) -> Any:
    """Fail a pending or running job with "cancelled"; its Celery task is terminated, its
    HTTP runner told by the 409 of its next heartbeat."""
    job = await run_in_threadpool(lifecycle.cancel, runtime.engine, job_id)
    if job is None:
        found = await run_in_threadpool(queries.job_by_id, runtime.engine, job_id)
        if found is None:
            raise JobNotFound(f"no job with id {job_id}")
        raise TransitionRejected(
            f"job {job_id} is already {found.status}: only a pending or running job can be "
            "cancelled"
        )
    if job.claimed_by is not None:
        background.add_task(_stop_celery_task, runtime, job)
    return Outcome(success=True, message=f"Job {job_id} cancelled")


async def _delete(runtime: Any, job_ids: list[str]) -> set[str]:
    deleted = await run_in_threadpool(lifecycle.delete, runtime.engine, job_ids)
    runtime.results.clear()
    return deleted


@router.delete("/jobs/{job_id}", response_model=DeleteResponse, dependencies=[AdminKey])
async def delete_job(job_id: PathId, runtime: AdminRate) -> Any:
    """Delete one job, whatever its state."""
    if not await _delete(runtime, [job_id]):
        raise JobNotFound(f"no job with id {job_id}")
    return DeleteResponse(success=True, message=f"Job {job_id} deleted", deleted=1)


@router.post("/jobs/batch-delete", response_model=BatchDeleteResponse, dependencies=[AdminKey])
async def batch_delete(body: BatchDeleteRequest, runtime: AdminRate) -> Any:
    """Delete several jobs by id; ids of no job are skipped and listed in ``failed``."""
    deleted = await _delete(runtime, body.job_ids)
    failed = [job_id for job_id in dict.fromkeys(body.job_ids) if job_id not in deleted]
    return BatchDeleteResponse(
        success=True,
        message=f"{len(deleted)} jobs deleted, {len(failed)} not found",
        deleted=len(deleted),
        failed=failed,
    )


@router.post(
    "/jobs/expire",
    response_model=ExpiredCount,
    dependencies=[AdminKey],
)
async def expire_jobs(body: ExpireRequest, runtime: AdminRate) -> Any:
    """Expire the completed jobs matching every filter given (at least one): their results
    are recomputed on their next submit."""
    filters = body.model_dump(exclude_none=True)
    if not filters:
        raise InvalidRequest("give at least one of job_type, cache_version, finished_before")
    expired = await run_in_threadpool(
        functools.partial(lifecycle.expire_matching, runtime.engine, **filters)
    )
    runtime.results.clear()
    return ExpiredCount(expired=expired)


@router.post(
    "/jobs/{job_id}/expire",
    response_model=ExpireResponse,
    responses={409: {"model": ErrorBody}},
    dependencies=[AdminKey],
)
async def expire_job(job_id: PathId, runtime: AdminRate) -> Any:
    """Expire one completed job: its result is recomputed on its next submit."""
    expired = await run_in_threadpool(lifecycle.expire, runtime.engine, job_id)
    runtime.results.clear()
    if expired is None:
        found = await run_in_threadpool(queries.job_by_id, runtime.engine, job_id)
        if found is None:
            raise JobNotFound(f"no job with id {job_id}")
        raise TransitionRejected(f"job {job_id} is {found.status}; only a completed job expires")
    return ExpireResponse(success=True, message=f"Job {job_id} expired", expired=1)
