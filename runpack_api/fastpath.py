"""Cached completed results answered before routing: the cache-hit fast path.

A submit, check or status request whose completed answer is in this process's
ResultCache is answered here, after the same key check and rate limit the routes apply
(the same functions their dependencies call), without FastAPI's routing, dependency
resolution and body validation, which cost more than the answer itself. Anything else (a
miss, a body the routes would refuse, a refused key) goes on to the routes with its body
replayed, and they answer it in full.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runpack_api.deps import Role, authenticate, count_request
from runpack_api.jsonbody import parse_json, raw_json_response
from runpack_api.ratelimit import RateCategory
from runpack_api.runtime import Runtime
from runpack_tasks.errors import RunpackError
from runpack_tasks.jobstore.hashing import job_hash

JOBS_PREFIX = "/api/jobs/"
BODY_ROUTES = {"submit", "check"}


def _cache_key(method: str, path: str, body: bytes) -> tuple[tuple[str, str], str] | None:
    """The ResultCache key this request would be answered from, if it is well formed, and
    its job type (empty for status)."""
    tail = path[len(JOBS_PREFIX) :]
    if method == "GET" and tail and "/" not in tail and tail not in BODY_ROUTES:
        return ("status", tail), ""
    if method != "POST" or tail not in BODY_ROUTES:
        return None
    try:
        document = parse_json(body)
        job_type, params = document["job_type"], document["input_params"]
        if not isinstance(job_type, str) or not isinstance(params, dict):
            return None
        return (tail, job_hash(job_type, params)), job_type
    except Exception:  # anything the routes would refuse is theirs to refuse
        return None


class CompletedFastPath:
    """ASGI middleware answering cache hits for submit, check and status."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(JOBS_PREFIX):
            await self.app(scope, receive, send)
            return
        body, receive = await self._buffered(receive)
        found = _cache_key(scope["method"], scope["path"], body)
        cached = self.runtime.results.get(found[0]) if found is not None else None
        if found is None or cached is None or not await self._allowed(scope, found[0][0]):
            await self.app(scope, receive, send)
            return
        (route, _), job_type = found
        if route == "submit":
            self.runtime.metrics.submitted(job_type, cache_hit=True)
        await raw_json_response(cached)(scope, receive, send)

    async def _allowed(self, scope: Scope, route: str) -> bool:
        request = Request(scope)
        category = RateCategory.STATUS if route == "status" else RateCategory.SUBMIT
        try:
            authenticate(request, self.runtime, (Role.SUBMIT,))
            await count_request(request, self.runtime, category)
        except RunpackError:  # the route refuses it again, with its error body
            return False
        return True

    @staticmethod
    async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
        """The whole body, and a receive that hands it on again."""
        chunks: list[bytes] = []
        message: dict[str, Any] = {}
        while True:
            message = dict(await receive())
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                if message["type"] != "http.request":
                    return message
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return body, replay
