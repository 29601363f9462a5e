"""Queue names: one Celery queue per job type."""

from __future__ import annotations

QUEUE_PREFIX = "runpack.jobs."
#: Where a task sent without a queue would go; no job is ever sent there.
DEFAULT_QUEUE = "runpack.default"


def queue_for(job_type: str) -> str:
    """The queue a job type's messages go to (job types are already safe as names)."""
    return f"{QUEUE_PREFIX}{job_type}"
