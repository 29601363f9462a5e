"""Turning job and runner rows into the API's response bodies (seed shapes)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Row

from runpack_tasks.jobstore.models import JobRow as StoredJob
from runpack_tasks.jobstore.models import JobStatus

#: A whole job (from the state machine or a lookup) or a listing's summary row.
JobRow = StoredJob | Row[Any]

SUBMIT_MESSAGES = {
    JobStatus.PENDING: "Job is already queued",
    JobStatus.CLAIMED: "Job has been claimed by a runner",
    JobStatus.IN_PROGRESS: "Job is in progress",
    JobStatus.COMPLETED: "Job already completed; returning the cached result",
}


def progress(job: JobRow) -> dict[str, Any] | None:
    """``{current, total}`` once a runner reported progress."""
    if job.progress_current is None and job.progress_total is None:
        return None
    return {"current": job.progress_current, "total": job.progress_total}


def result(job: JobRow) -> dict[str, Any]:
    """A completed job's output and log."""
    return {"output_data": job.output_data, "console_output": job.console_output}


def submitted(job: JobRow, *, created: bool, requeued: bool) -> dict[str, Any]:
    """The body answering a submission."""
    status = JobStatus(job.status)
    if created:
        message = "Job created and queued"
    elif requeued:
        message = "Job had failed or expired; requeued"
    else:
        message = SUBMIT_MESSAGES.get(status, f"Job is {status.value}")
    body: dict[str, Any] = {"job_id": job.id, "status": status.value, "message": message}
    if status is JobStatus.COMPLETED:
        body["result"] = result(job)
    return body


def checked(job: JobRow | None) -> dict[str, Any]:
    """The body answering a check."""
    if job is None:
        return {"exists": False, "message": "No job with this type and parameters"}
    body: dict[str, Any] = {
        "exists": True,
        "job_id": job.id,
        "status": job.status,
        "message": f"Job exists and is {job.status}",
    }
    if job.status == JobStatus.COMPLETED.value:
        body["result"] = result(job)
    if job.error_message is not None:
        body["error"] = job.error_message
    return body


def job_status(job: JobRow) -> dict[str, Any]:
    """A job as its submitter sees it."""
    body: dict[str, Any] = {
        "job_id": job.id,
        "status": job.status,
        "job_type": job.job_type,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
    }
    if (current := progress(job)) is not None:
        body["progress"] = current
    if job.status == JobStatus.COMPLETED.value:
        body["result"] = result(job)
    if job.error_message is not None:
        body["error"] = job.error_message
    return body


def job_summary(job: JobRow) -> dict[str, Any]:
    """One row of the admin job list."""
    body = {
        "job_id": job.id,
        "job_type": job.job_type,
        "status": job.status,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "claimed_by": job.claimed_by,
        "attempts": job.attempts,
    }
    if (current := progress(job)) is not None:
        body["progress"] = current
    return body


def job_detail(job: JobRow) -> dict[str, Any]:
    """Everything stored about a job."""
    return {
        **job_summary(job),
        "input_params": job.input_params,
        "job_hash": job.job_hash,
        "claimed_at": job.claimed_at,
        "last_heartbeat": job.last_heartbeat,
        "finished_at": job.finished_at,
        "published_at": job.published_at,
        "console_output": job.console_output,
        "output_data": job.output_data,
        "error_message": job.error_message,
    }


def runner_summary(runner: Row[Any], active_since_ms: int) -> dict[str, Any]:
    """One runner, active if seen since ``active_since_ms``."""
    return {
        "runner_id": runner.id,
        "name": runner.name,
        "kind": runner.kind,
        "capabilities": runner.capabilities,
        "last_seen": runner.last_seen,
        "is_active": runner.last_seen >= active_since_ms,
    }
