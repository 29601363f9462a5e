"""The jobs, runners, job counts and run-time tables; the job states (``states``), re-exported."""

from __future__ import annotations

import time
from collections import namedtuple
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Field, SQLModel
from uuid_utils import uuid7

from runpack_tasks.jobstore.states import ACTIVE_STATUSES as ACTIVE_STATUSES
from runpack_tasks.jobstore.states import RESUBMITTABLE_STATUSES as RESUBMITTABLE_STATUSES
from runpack_tasks.jobstore.states import JobStatus as JobStatus
from runpack_tasks.jobstore.states import RunnerKind as RunnerKind


def now_ms() -> int:
    """The current time in integer epoch milliseconds, the unit of every timestamp."""
    return time.time_ns() // 1_000_000


def time_ordered_ids(count: int, created_at_ms: int) -> list[str]:
    """``count`` new job ids in UUID version 7 form (RFC 9562): the creation time in
    milliseconds, then 74 random bits. Ids made in one millisecond sort apart, but each
    index takes them near its right edge, so a batch's rows touch a few index pages
    instead of one random page each (random ids made every write of 1,000 jobs rewrite
    about a thousand pages of the primary key)."""
    nanoseconds = created_at_ms * 1_000_000
    return [str(uuid7(nanoseconds=nanoseconds)) for _ in range(count)]


class Job(SQLModel, table=True):
    """One computation, identified by the hash of its type and parameters."""

    __tablename__ = "jobs"
    __table_args__ = (
        sa.Index("ix_jobs_status_type_created", "status", "job_type", "created_at"),
        sa.Index("ix_jobs_type_created", "job_type", "created_at"),
        sa.Index("ix_jobs_created", "created_at"),
        sa.Index("ix_jobs_claimed_by_updated", "claimed_by", "updated_at"),
        sa.Index("ix_jobs_status_type_published", "status", "job_type", "published_at"),
        sa.Index("ix_jobs_status_finished", "status", "finished_at"),
    )

    id: str = Field(primary_key=True, max_length=36)
    job_hash: str = Field(max_length=64, sa_column_kwargs={"unique": True}, nullable=False)
    job_type: str = Field(max_length=128, nullable=False)
    input_params: dict[str, Any] = Field(sa_type=sa.JSON, nullable=False)
    status: JobStatus = Field(
        sa_type=sa.String(16),
        nullable=False,
    )
    created_at: int = Field(sa_type=sa.BigInteger, nullable=False)
    updated_at: int = Field(sa_type=sa.BigInteger, nullable=False)
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_at: int | None = Field(default=None, sa_type=sa.BigInteger)
    last_heartbeat: int | None = Field(default=None, sa_type=sa.BigInteger)
    finished_at: int | None = Field(default=None, sa_type=sa.BigInteger)
    #: Progress as its runner reports it: any number >= 0, such as 3 of 10 or 0.42 of 1.
    progress_current: float | None = Field(default=None, sa_type=sa.Double)
    progress_total: float | None = Field(default=None, sa_type=sa.Double)
    console_output: str | None = Field(default=None, sa_type=sa.Text)
    output_data: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    error_message: str | None = Field(default=None, sa_type=sa.Text)
    #: Claims so far; the first claim is attempt 1. Reset when a failed job is resubmitted.
    attempts: int = Field(default=0, nullable=False)
    #: When a Celery message for this pending job was last sent; None while none is known.
    published_at: int | None = Field(default=None, sa_type=sa.BigInteger)
    #: The ``cache_version`` of the plugin that computed the result (None: not recorded).
    cache_version: str | None = Field(default=None, max_length=128)


class Runner(SQLModel, table=True):
    """A process that executes jobs: an HTTP runner or a Celery worker."""

    __tablename__ = "runners"
    __table_args__ = (sa.Index("ix_runners_last_seen", "last_seen"),)

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=128, nullable=False)
    kind: RunnerKind = Field(
        default=RunnerKind.HTTP,
        sa_type=sa.String(16),
        nullable=False,
    )
    capabilities: list[str] = Field(sa_type=sa.JSON, nullable=False)
    registered_at: int = Field(sa_type=sa.BigInteger, nullable=False)
    last_seen: int = Field(sa_type=sa.BigInteger, nullable=False)
    #: When it said it was stopping (None while running): a stopped runner is not active,
    #: however recently it was seen.
    stopped_at: int | None = Field(default=None, sa_type=sa.BigInteger)


JOBS = Job.__table__  # type: ignore[attr-defined]
RUNNERS = Runner.__table__  # type: ignore[attr-defined]
#: Changes in how many jobs of a type are in a state (``n``, negative when they left it),
#: written by the database's triggers on ``jobs`` (migration 0007): a count is a sum.
JOB_COUNTS = sa.Table(
    "job_counts",
    SQLModel.metadata,
    sa.Column("job_type", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("n", sa.BigInteger(), nullable=False),
)
#: Changes in how many completed jobs of a type ran (claim to finish) within a bucket of
#: the run-time histogram, and in their total run time: written like ``JOB_COUNTS``.
JOB_RUN_TIMES = sa.Table(
    "job_run_times",
    SQLModel.metadata,
    sa.Column("job_type", sa.String(128), nullable=False),
    sa.Column("bucket", sa.SmallInteger(), nullable=False),
    sa.Column("n", sa.BigInteger(), nullable=False),
    sa.Column("run_ms", sa.BigInteger(), nullable=False),
)

if TYPE_CHECKING:

    class JobRow(NamedTuple):
        """A whole job row, its fields in the table's column order.

        This is only the row's type for the type checker; the row itself is built from
        ``JOBS``'s columns below, and a test holds the two equal.
        """

        id: str
        job_hash: str
        job_type: str
        input_params: dict[str, Any]
        status: str
        created_at: int
        updated_at: int
        claimed_by: str | None
        claimed_at: int | None
        last_heartbeat: int | None
        finished_at: int | None
        progress_current: float | None
        progress_total: float | None
        console_output: str | None
        output_data: dict[str, Any] | None
        error_message: str | None
        attempts: int
        published_at: int | None
        cache_version: str | None

else:
    JobRow = namedtuple("JobRow", JOBS.c.keys(), module=__name__)
    JobRow.__doc__ = "A whole job row, its fields in the table's column order."
