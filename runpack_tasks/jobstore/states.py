"""The states of a job and the kinds of runner: what clients share with the job store.

Here apart from the tables (``models``) so that a client of the API (the command line, an
HTTP runner) can name them without loading SQLAlchemy.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job is in its lifecycle (SPEC §2)."""

    #: Waiting for a runner or a Celery worker to claim it.
    PENDING = "pending"
    #: Claimed by a runner that has not reported progress yet.
    CLAIMED = "claimed"
    #: Its runner is reporting heartbeats.
    IN_PROGRESS = "in_progress"
    #: Finished with a result, which is the cache entry for its hash.
    COMPLETED = "completed"
    #: Finished with an error, or ran out of attempts.
    FAILED = "failed"
    #: Completed once, but its result is no longer valid.
    EXPIRED = "expired"


ACTIVE_STATUSES = (JobStatus.CLAIMED, JobStatus.IN_PROGRESS)
RESUBMITTABLE_STATUSES = (JobStatus.FAILED, JobStatus.EXPIRED)


class RunnerKind(StrEnum):
    """How a runner reaches Runpack."""

    #: Polls the HTTP API for jobs.
    HTTP = "http"
    #: A Celery worker consuming its job types' queues.
    CELERY = "celery"
