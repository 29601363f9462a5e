"""Submits and cached completed results answered before routing: the fast path.

A submit, check or status request whose completed answer is in this process's
ResultCache is answered here, after the same key check and rate limit the routes apply
(the same functions their dependencies call), without FastAPI's routing, dependency
resolution and body validation, which cost more than the answer itself. A submit that
misses the cache, with a body that ``JobRequest`` accepts, is handed to the submit route's
own function with the same checks done first. Anything else (a check or status miss, a
body the routes would refuse, a refused key) goes on to the routes with its body
replayed, and they answer it in full.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runpack_api.deps import Role, authenticate, count_request
from runpack_api.errors import runpack_error_response
from runpack_api.jsonbody import parse_json, raw_json_response
from runpack_api.ratelimit import RateCategory
from runpack_api.routes import jobs
from runpack_api.runtime import Runtime
from runpack_api.schemas import JobRequest
from runpack_tasks.errors import RunpackError
from runpack_tasks.jobstore.hashing import job_hash

JOBS_PREFIX = "/api/jobs/"
BODY_ROUTES = {"submit", "check"}


@dataclass(frozen=True)
class _Parsed:
    """What the fast path read of a request: its ResultCache key, and a submit's body."""

    key: tuple[str, str]
    body: JobRequest | None = None  # a submit body JobRequest accepts


def _declares_json(scope: Scope) -> bool:
    """FastAPI's rule: a body is JSON without a content type, or with application/json
    or application/*+json."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            mime: bytes = value.split(b";", 1)[0].strip().lower()
            main, _, sub = mime.partition(b"/")
            return main == b"application" and (sub == b"json" or sub.endswith(b"+json"))
    return True


def _parse(scope: Scope, body: bytes) -> _Parsed | None:
    """The ResultCache key this request would be answered from, if it is well formed."""
    method, tail = scope["method"], scope["path"][len(JOBS_PREFIX) :]
    if method == "GET" and tail and "/" not in tail and tail not in BODY_ROUTES:
        return _Parsed(("status", tail))
    if method != "POST" or tail not in BODY_ROUTES or not _declares_json(scope):
        return None
    try:
        document = parse_json(body)
        job_type, params = document["job_type"], document["input_params"]
        if not isinstance(job_type, str) or not isinstance(params, dict):
            return None
        key = (tail, job_hash(job_type, params))
        if tail != "submit":
            return _Parsed(key)
        return _Parsed(key, JobRequest.model_validate(document))
    except Exception:  # anything the routes would refuse is theirs to refuse
        return None


class JobsFastPath:
    """ASGI middleware answering submits, and cache hits for check and status."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(JOBS_PREFIX):
            await self.app(scope, receive, send)
            return
        body, receive = await self._buffered(receive)
        parsed = _parse(scope, body)
        response = await self._answer(scope, parsed) if parsed is not None else None
        if response is None:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)

    async def _answer(self, scope: Scope, parsed: _Parsed) -> Response | None:
        """A submit's answer (the submit route's work, its cache hits too), or a check's or
        status's from the cache; None leaves the request to the routes."""
        if parsed.body is None:
            cached = self.runtime.results.get(parsed.key)
            if cached is None or not await self._allowed(scope, parsed.key[0]):
                return None
            return raw_json_response(cached)
        if not await self._allowed(scope, parsed.key[0]):
            return None
        try:
            return await jobs.submit(self.runtime, parsed.body, parsed.key[1])
        except RunpackError as exc:
            return runpack_error_response(exc)

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
