"""Request and response bodies of the HTTP API, as /docs shows them.

Pydantic models only: the API's clients (the command line, HTTP runners) use them too, and
load neither FastAPI nor SQLAlchemy for them; the routes' path and query parameters are in
``params``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from runpack_api.openapi import JSON_OBJECT_MARK, STORABLE_TEXT_PATTERN
from runpack_tasks.jobstore.payloads import JOB_TYPE_PATTERN, MAX_SAFE_INTEGER, refuse_nul
from runpack_tasks.jobstore.states import JobStatus, RunnerKind

JobType = Annotated[str, StringConstraints(pattern=JOB_TYPE_PATTERN)]
#: Progress a runner reports: any finite JSON number from 0 up to JavaScript's safe range.
Amount = Annotated[float, Field(ge=0, le=MAX_SAFE_INTEGER, allow_inf_nan=False)]
#: Most job types a runner serves, or names in one request for jobs.
MAX_CAPABILITIES = 256
#: Longest id a path may name: job ids are UUIDs, runner ids at most this long.
MAX_ID_LENGTH = 64
#: Text stored in a column: anything but NUL.
Text = Annotated[
    str, AfterValidator(refuse_nul), Field(json_schema_extra={"pattern": STORABLE_TEXT_PATTERN})
]
#: A JSON object Runpack stores (parameters, results): its values are checked by
#: ``payloads.check_json`` (depth, NUL, safe integers, size); the schema says the same.
JsonObject = Annotated[dict[str, Any], WithJsonSchema(JSON_OBJECT_MARK)]


class _Request(BaseModel):
    model_config = ConfigDict(strict=True)


# --- requests ---------------------------------------------------------------------------


class JobRequest(_Request):
    """A job: its type and its parameters (any JSON object)."""

    job_type: JobType
    input_params: JsonObject


class BatchRequest(_Request):
    """Jobs submitted at once (each checked as a single submit is)."""

    jobs: list[JobRequest] = Field(min_length=1)


class StatusBatchRequest(_Request):
    """Jobs whose status to read at once."""

    job_ids: list[Annotated[Text, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]] = (
        Field(min_length=1)
    )


class RegisterRequest(_Request):
    """A runner announcing itself and the job types it serves."""

    name: Annotated[Text, StringConstraints(min_length=1, max_length=128)]
    capabilities: Annotated[list[JobType], Field(max_length=MAX_CAPABILITIES)]


class HeartbeatRequest(_Request):
    """Progress and the whole console log so far (it replaces the stored log)."""

    progress_current: Amount | None = None
    progress_total: Amount | None = None
    console_output: Text | None = None


class CompleteRequest(_Request):
    """A job's result, and the ``cache_version`` of the plugin that computed it (optional)."""

    output_data: JsonObject
    console_output: Text | None = None
    cache_version: Annotated[Text, StringConstraints(max_length=128)] | None = None


class ErrorRequest(_Request):
    """Why a job failed."""

    error_message: Text
    console_output: Text | None = None


def _integral(value: Any) -> Any:
    """A float without a fraction as the integer it is: JSON has one number type, and a
    client may write 5 as 5.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: The schema's way of saying "at least one filter given, and not null".
EXPIRE_FILTER_GIVEN: list[Any] = [
    {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
    for name in ("job_type", "cache_version", "finished_before")
]


class ExpireRequest(_Request):
    """Which completed jobs to expire: those matching every filter given (at least one;
    a null filter is not given)."""

    model_config = ConfigDict(strict=True, json_schema_extra={"anyOf": EXPIRE_FILTER_GIVEN})

    job_type: JobType | None = None
    cache_version: Annotated[Text, StringConstraints(max_length=128)] | None = None
    #: Epoch milliseconds: results that finished before then.
    finished_before: (
        Annotated[int, Field(ge=0, le=MAX_SAFE_INTEGER), BeforeValidator(_integral)] | None
    ) = None


class BatchDeleteRequest(_Request):
    """Jobs to delete."""

    job_ids: Annotated[list[Text], Field(min_length=1, max_length=1000)]


# --- responses --------------------------------------------------------------------------


class Progress(BaseModel):
    """How far a running job is: a whole number is given as an integer, as runners send it."""

    current: int | float | None
    total: int | float | None


class JobResult(BaseModel):
    """What a completed job produced."""

    output_data: dict[str, Any] | None
    console_output: str | None


class SubmitResponse(BaseModel):
    """The job a submission maps to; ``result`` when it was already computed."""

    job_id: str
    status: JobStatus
    message: str
    result: JobResult | None = None
    #: ``False`` (else absent) when the job is pending and no active HTTP runner or Celery
    #: worker serves its type.
    served: bool | None = None


class BatchItem(SubmitResponse):
    """What a single submit would have answered for one job of a batch, and whether this
    batch created it."""

    created: bool


class BatchResponse(BaseModel):
    """One answer per job of the batch, in its order."""

    results: list[BatchItem]


class CheckResponse(BaseModel):
    """Whether a job with this type and parameters exists."""

    exists: bool
    message: str
    job_id: str | None = None
    status: JobStatus | None = None
    result: JobResult | None = None
    error: str | None = None


class JobStatusResponse(BaseModel):
    """A job as its submitter sees it."""

    job_id: str
    status: JobStatus
    job_type: str
    created_at: int
    updated_at: int
    progress: Progress | None = None
    result: JobResult | None = None
    error: str | None = None


class StatusBatchResponse(BaseModel):
    """One status per job id asked for, in order; ``null`` for an id no job has."""

    results: list[JobStatusResponse | None]


class RegisterResponse(BaseModel):
    """The id a runner uses from now on in ``X-Runner-ID``."""

    runner_id: str
    message: str


class VerifyResponse(BaseModel):
    """The runner is known."""

    exists: bool
    runner_name: str
    message: str


class AvailableJob(BaseModel):
    """A pending job a runner may claim."""

    job_id: str
    job_type: str
    input_params: dict[str, Any]
    created_at: int


class AvailableResponse(BaseModel):
    """Pending jobs of the asked types, oldest first."""

    jobs: list[AvailableJob]


class ClaimedJob(BaseModel):
    """What a runner needs to run a job."""

    job_id: str
    job_type: str
    input_params: dict[str, Any]


class ClaimResponse(BaseModel):
    """A successful claim."""

    success: bool
    message: str
    job: ClaimedJob


class Outcome(BaseModel):
    """The outcome of a runner's report or an admin action."""

    success: bool
    message: str


class JobSummary(BaseModel):
    """One row of the admin job list."""

    job_id: str
    job_type: str
    status: JobStatus
    created_at: int
    updated_at: int
    claimed_by: str | None
    #: The name of the runner ``claimed_by`` names, while that runner is registered.
    claimed_by_name: str | None = None
    attempts: int
    progress: Progress | None = None


class JobList(BaseModel):
    """A page of jobs and how many match the filters."""

    jobs: list[JobSummary]
    #: Jobs matching the filters (counted at most ``RUNPACK_COUNTS_CACHE_S`` ago).
    total: int
    #: Pass as ``before`` for the next page (None on the last page).
    next_before: str | None = None


class JobDetail(JobSummary):
    """Everything stored about a job."""

    input_params: dict[str, Any]
    job_hash: str
    claimed_at: int | None
    last_heartbeat: int | None
    finished_at: int | None
    #: When its Celery message was last sent (None: not published, e.g. HTTP-runner types).
    published_at: int | None = None
    console_output: str | None
    output_data: dict[str, Any] | None = None
    error_message: str | None = None
    #: The ``cache_version`` of the plugin that computed the result (None: not recorded).
    cache_version: str | None = None


class RunnerSummary(BaseModel):
    """One runner: an HTTP runner or a Celery worker."""

    runner_id: str
    name: str
    kind: RunnerKind
    capabilities: list[str]
    last_seen: int
    is_active: bool


class RunnerWithJob(RunnerSummary):
    """A runner and the job it is running now, if any."""

    current_job: str | None = None


class RunnerList(BaseModel):
    """A page of runners and how many there are."""

    runners: list[RunnerWithJob]
    total: int
    limit: int
    offset: int


class RunnerDetail(RunnerSummary):
    """A runner and the jobs it claimed most recently."""

    registered_at: int
    jobs: list[JobSummary]


class JobCounts(BaseModel):
    """Jobs per state."""

    pending: int
    claimed: int
    in_progress: int
    completed: int
    failed: int
    expired: int
    total: int


class RunnerCounts(BaseModel):
    """Runners known and recently seen."""

    total: int
    active: int


class SubmissionCounts(BaseModel):
    """Submissions this API process answered since it started, and how many were cache hits."""

    total: int
    cache_hits: int


class Stats(BaseModel):
    """The whole system at a glance."""

    jobs: JobCounts
    runners: RunnerCounts
    submissions: SubmissionCounts
    #: Seconds of run time (claim to finish) of the jobs this API process answered from
    #: cache since it started: submits and checks answered with a completed result.
    compute_saved_s: float


class JobTypeInfo(BaseModel):
    """A job type this system knows: a plugin on the API host, or one a runner serves."""

    name: str
    version: str | None
    description: str
    #: JSON Schema of its parameters, when the API host has the plugin.
    params_schema: dict[str, Any] | None
    #: Whether an active runner or worker serves it now.
    served: bool


class JobTypeList(BaseModel):
    """Every known job type."""

    job_types: list[JobTypeInfo]


class MinuteCount(BaseModel):
    """Jobs completed in one minute."""

    minute: int
    completed: int


class Throughput(BaseModel):
    """Completed jobs per minute, oldest minute first."""

    per_minute: list[MinuteCount]


class DeleteResponse(Outcome):
    """How many jobs a delete removed."""

    deleted: int


class ExpireResponse(Outcome):
    """The job whose result was expired."""

    expired: int


class ExpiredCount(BaseModel):
    """How many completed jobs were expired."""

    expired: int


class BatchDeleteResponse(DeleteResponse):
    """How many jobs a batch delete removed, and the ids it did not (no such job)."""

    failed: list[str]


class Health(BaseModel):
    """Whether the database and the broker answer."""

    status: str
    database: str
    broker: str


class ErrorBody(BaseModel):
    """Every error: what is wrong."""

    error: str


#: The answer of a route that counts requests against a rate limit, once over it.
RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorBody, "description": "Over the rate limit; Retry-After says when to retry"}
}
