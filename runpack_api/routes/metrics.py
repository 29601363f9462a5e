"""GET /metrics: Prometheus's text format (no key, like /health: expose it to your scraper only)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from runpack_api.deps import RuntimeDep

router = APIRouter()


@router.get(
    "/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}}
)
async def metrics(runtime: RuntimeDep) -> Response:
    """Submissions, cache hits, completions and failures by type, queue depth, job durations,
    heartbeat lag."""
    body = await run_in_threadpool(runtime.metrics.exposition)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
