"""GET /health: whether the database and the broker answer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from runpack_api.deps import RuntimeDep
from runpack_api.jsonbody import json_response
from runpack_api.schemas import Health
from runpack_tasks.broker import broker_reachable
from runpack_tasks.jobstore import queries

router = APIRouter()


def _database_state(runtime: Any) -> str:
    try:
        queries.ping(runtime.engine)
    except Exception as exc:  # any driver error means "not reachable"
        return f"unreachable: {type(exc).__name__}"
    return "ok"


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "A dependency is down"}},
)
async def health(runtime: RuntimeDep) -> Response:
    """200 when the database and broker answer, 503 naming the one that does not."""
    database = await run_in_threadpool(_database_state, runtime)
    _, broker = await run_in_threadpool(broker_reachable, runtime.settings.broker_url)
    healthy = database == "ok" and broker == "ok"
    return json_response(
        {"status": "ok" if healthy else "degraded", "database": database, "broker": broker},
        200 if healthy else 503,
    )
