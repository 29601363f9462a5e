"""Client routes: submit a job, check for one, read its status.

Each endpoint is the whole pipeline of its request, in this order: the gate (key, then
rate limit), the JSON body read by FastAPI's rules, then ``operations``, which answers
from the ResultCache or validates the body as ``JobRequest`` and answers from the store.
The endpoints take the raw request and plain path parameters, and depend on nothing
FastAPI would resolve, so that the ``DirectRoutes`` stage (``direct.py``) can call them as
they are; ``/docs`` still shows every body from the schema models.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from runpack_api import operations
from runpack_api.deps import Role, gate
from runpack_api.jsonbody import read_json
from runpack_api.ratelimit import RateCategory
from runpack_api.schemas import (
    RATE_LIMITED,
    BatchRequest,
    BatchResponse,
    CheckResponse,
    ErrorBody,
    JobRequest,
    JobStatusResponse,
    StatusBatchRequest,
    StatusBatchResponse,
    SubmitResponse,
)

router = APIRouter(responses={**RATE_LIMITED})
SUBMITTER = (Role.SUBMIT,)


def _inlined(node: Any, definitions: dict[str, Any]) -> Any:
    """``node`` with every ``#/$defs/...`` reference replaced by its definition."""
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith("#/$defs/"):
            return _inlined(definitions[ref.removeprefix("#/$defs/")], definitions)
        return {k: _inlined(v, definitions) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inlined(item, definitions) for item in node]
    return node


def body(model: type[BaseModel]) -> dict[str, Any]:
    """The request body a raw-request endpoint reads, as /docs shows it: the model's
    schema, self-contained (its nested models inlined)."""
    schema = model.model_json_schema()
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inlined(schema, schema.get("$defs", {}))}},
        }
    }


#: The request body of submit and check, as /docs shows it.
JOB_BODY = body(JobRequest)


@router.post(
    "/submit",
    status_code=201,
    response_model=SubmitResponse,
    responses={200: {"model": SubmitResponse, "description": "The job existed"}},
    openapi_extra=JOB_BODY,
)
async def submit_job(request: Request) -> Response:
    """Create a job, or return the existing one (with its result when completed).

    A failed or expired job is requeued. 201 when this call created the job. Parameters
    are validated by the job type's plugin when this API host has it installed.
    """
    runtime = await gate(request, SUBMITTER, RateCategory.SUBMIT)
    return await operations.submit(runtime, await read_json(request))


@router.post(
    "/submit-batch",
    response_model=BatchResponse,
    openapi_extra=body(BatchRequest),
)
async def submit_batch(request: Request) -> Response:
    """Submit up to ``RUNPACK_MAX_BATCH_JOBS`` jobs at once: one answer per job, in order,
    each what a single submit would answer plus ``created``.

    Every job is checked as a single submit is; one bad job refuses the whole batch (the
    error names its index) and nothing is created. Identical jobs get the same job id. A
    batch counts as one request against ``RUNPACK_RATE_BATCH``.
    """
    runtime = await gate(request, SUBMITTER, RateCategory.BATCH)
    return await operations.submit_batch(runtime, await read_json(request))


@router.post(
    "/status-batch",
    response_model=StatusBatchResponse,
    openapi_extra=body(StatusBatchRequest),
)
async def status_batch(request: Request) -> Response:
    """The status of up to ``RUNPACK_MAX_BATCH_JOBS`` jobs at once, in order (``null`` for an
    unknown id): what following a batch polls. Counts as one request of
    ``RUNPACK_RATE_STATUS``."""
    runtime = await gate(request, SUBMITTER, RateCategory.STATUS)
    return await operations.status_batch(runtime, await read_json(request))


@router.post("/check", response_model=CheckResponse, openapi_extra=JOB_BODY)
async def check_job(request: Request) -> Response:
    """Whether this job exists, with its result or error; never creates or requeues."""
    runtime = await gate(request, SUBMITTER, RateCategory.SUBMIT)
    return await operations.check(runtime, await read_json(request))


@router.get(
    "/{job_id}",
    response_model=JobStatusResponse,
    responses={404: {"model": ErrorBody}},
)
async def job_status(request: Request, job_id: str) -> Response:
    """A job's status, progress, and result or error."""
    runtime = await gate(request, SUBMITTER, RateCategory.STATUS)
    return await operations.status(runtime, job_id)
