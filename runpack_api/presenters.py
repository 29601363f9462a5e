"""Job and runner rows turned into the API's response models (the seed's shapes)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Row

from runpack_api.schemas import (
    CheckResponse,
    JobDetail,
    JobResult,
    JobStatusResponse,
    JobSummary,
    Progress,
    RunnerDetail,
    RunnerWithJob,
    SubmitResponse,
)
from runpack_tasks.jobstore import runners
from runpack_tasks.jobstore.models import JobRow, JobStatus

#: A whole job, or a row of a listing with the summary's columns.
Listed = JobRow | Row[Any]

SUBMIT_MESSAGES = {
    JobStatus.PENDING: "Job is already queued",
    JobStatus.CLAIMED: "Job has been claimed by a runner",
    JobStatus.IN_PROGRESS: "Job is in progress",
    JobStatus.COMPLETED: "Job already completed; returning the cached result",
}


REQUEUED_MESSAGES: dict[str, str] = {
    JobStatus.FAILED.value: "Job had failed; requeued",
    JobStatus.EXPIRED.value: "Job's cached result had expired; requeued",
}


def _amount(value: float | None) -> int | float | None:
    """A stored progress value as it was reported: a whole number as an integer (the column
    holds every number as a float; all reported ones are below 2**53, so exactly)."""
    if value is not None and float(value).is_integer():
        return int(value)
    return value


def _progress(job: Listed) -> dict[str, Any]:
    """``progress`` once a runner reported some, else nothing."""
    if job.progress_current is None and job.progress_total is None:
        return {}
    return {
        "progress": Progress(
            current=_amount(job.progress_current), total=_amount(job.progress_total)
        )
    }


def _outcome(job: JobRow) -> dict[str, Any]:
    """``result`` of a completed job and ``error`` of a failed one, where they apply."""
    fields: dict[str, Any] = {}
    if job.status == JobStatus.COMPLETED:
        fields["result"] = JobResult(output_data=job.output_data, console_output=job.console_output)
    if job.error_message is not None:
        fields["error"] = job.error_message
    return fields


def unserved_note(job_type: str) -> str:
    """What a submit of a pending job adds when nothing serves its type."""
    return (
        f"no active HTTP runner or Celery worker serves job type {job_type!r} yet; "
        "the job waits until one does"
    )


def submitted(
    job: JobRow,
    *,
    created: bool,
    requeued: bool,
    served: bool | None = None,
    expired: str | None = None,
    requeued_from: str | None = None,
) -> SubmitResponse:
    """The answer to a submission; ``served`` (known for a pending job) is whether an active
    runner or worker serves its type: when none does, the message says so and the answer
    carries ``served: false`` (a served job's answer keeps the seed's shape). ``expired``
    says why this request found the job's cached result no longer valid; ``requeued_from``
    is the status a requeued job had."""
    status = JobStatus(job.status)
    if created:
        message = "Job created and queued"
    elif requeued and expired is not None:
        message = f"Job's cached result expired ({expired}); requeued"
    elif requeued:
        message = REQUEUED_MESSAGES.get(requeued_from or "", "Job had failed or expired; requeued")
    else:
        message = SUBMIT_MESSAGES.get(status, f"Job is {status.value}")
        if expired is not None:
            message = f"{message}; its cached result expired ({expired})"
    fields: dict[str, Any] = (
        {"result": _outcome(job)["result"]} if status is JobStatus.COMPLETED else {}
    )
    if served is False:
        fields["served"] = False
        message = f"{message}; {unserved_note(job.job_type)}"
    return SubmitResponse(job_id=job.id, status=status, message=message, **fields)


def checked(job: JobRow | None) -> CheckResponse:
    """The answer to a check."""
    if job is None:
        return CheckResponse(exists=False, message="No job with this type and parameters")
    return CheckResponse(
        exists=True,
        job_id=job.id,
        status=JobStatus(job.status),
        message=f"Job exists and is {job.status}",
        **_outcome(job),
    )


def job_status(job: JobRow) -> JobStatusResponse:
    """A job as its submitter sees it."""
    return JobStatusResponse(
        job_id=job.id,
        status=JobStatus(job.status),
        job_type=job.job_type,
        created_at=job.created_at,
        updated_at=job.updated_at,
        **_progress(job),
        **_outcome(job),
    )


def _summary_fields(job: Listed, claimed_by_name: str | None) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "job_type": job.job_type,
        "status": JobStatus(job.status),
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "claimed_by": job.claimed_by,
        "claimed_by_name": claimed_by_name,
        "attempts": job.attempts,
        **_progress(job),
    }


def job_summary(job: Row[Any]) -> JobSummary:
    """One row of the admin job list (a listing's row, which carries ``claimed_by_name``)."""
    return JobSummary(**_summary_fields(job, job.claimed_by_name))


def job_detail(job: JobRow, claimed_by_name: str | None) -> JobDetail:
    """Everything stored about a job; ``claimed_by_name`` is its runner's name."""
    return JobDetail(
        **_summary_fields(job, claimed_by_name),
        input_params=job.input_params,
        job_hash=job.job_hash,
        claimed_at=job.claimed_at,
        last_heartbeat=job.last_heartbeat,
        finished_at=job.finished_at,
        published_at=job.published_at,
        console_output=job.console_output,
        output_data=job.output_data,
        error_message=job.error_message,
        cache_version=job.cache_version,
    )


def _runner_fields(runner: Row[Any], active_since_ms: int) -> dict[str, Any]:
    """A runner is active if seen since ``active_since_ms``."""
    return {
        "runner_id": runner.id,
        "name": runner.name,
        "kind": runner.kind,
        "capabilities": runner.capabilities,
        "last_seen": runner.last_seen,
        "is_active": runners.is_active(runner, active_since_ms),
    }


def runner_detail(runner: Row[Any], active_since_ms: int, jobs: list[Row[Any]]) -> RunnerDetail:
    """One runner and the jobs it claimed most recently."""
    return RunnerDetail(
        **_runner_fields(runner, active_since_ms),
        registered_at=runner.registered_at,
        jobs=[job_summary(job) for job in jobs],
    )


def runner_listed(runner: Row[Any], active_since_ms: int, current_job: str | None) -> RunnerWithJob:
    """One runner of the admin list, with the job it runs now."""
    return RunnerWithJob(**_runner_fields(runner, active_since_ms), current_job=current_job)
