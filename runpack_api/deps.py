"""FastAPI dependencies: the runtime, API keys by role, runner identity and rate limits.

Each reads the runtime from the request itself rather than depending on ``get_runtime``:
FastAPI resolves every node of the dependency graph on every request, and on the cache-hit
path that resolution cost more than the work.
"""

from __future__ import annotations

import hmac
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from sqlalchemy import Engine
from sqlalchemy.engine import Row

from runpack_api.ratelimit import RateCategory, client_ip
from runpack_api.runtime import Runtime
from runpack_api.schemas import MAX_ID_LENGTH
from runpack_tasks.errors import InvalidRequest, NotAuthenticated, RunnerNotFound


def runtime_of(request: Request) -> Runtime:
    """The runtime of the API process serving this request."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_runtime(request: Request) -> Runtime:
    """The runtime, as a dependency."""
    return runtime_of(request)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_engine(request: Request) -> Engine:
    """The database engine."""
    return runtime_of(request).engine


EngineDep = Annotated[Engine, Depends(get_engine)]


class Role(StrEnum):
    """Which API key a route accepts."""

    SUBMIT = "submit"
    RUNNER = "runner"
    ADMIN = "admin"


def _bearer_token(request: Request) -> bytes:
    header = request.headers.get("authorization")
    if header is None:
        raise NotAuthenticated("missing Authorization header (expected 'Bearer <key>')")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("malformed Authorization header (expected 'Bearer <key>')")
    return token.strip().encode("utf-8", "surrogateescape")


def authenticate(request: Request, runtime: Runtime, roles: tuple[Role, ...]) -> None:
    """Raise NotAuthenticated unless the request carries the key of one of ``roles``."""
    token = _bearer_token(request)
    matched = False
    for role in roles:  # compare against every allowed key, in constant time each
        secret = getattr(runtime.settings, f"{role.value}_api_key")
        expected = secret.get_secret_value().encode() if secret is not None else b""
        matched |= bool(expected) and hmac.compare_digest(token, expected)
    if not matched:
        raise NotAuthenticated("invalid API key for this route")


async def count_request(request: Request, runtime: Runtime, category: RateCategory) -> None:
    """Count the request against its rate limit: per client IP; a runner's request also
    per runner, and per client IP in the budget of all runners there."""
    ip = client_ip(request, runtime.settings.trusted_proxies)
    if category is RateCategory.RUNNER:
        await runtime.rate_limits.hit(RateCategory.RUNNER_HOST, ip)
        runner_id = request.headers.get("x-runner-id")
        if runner_id:
            await runtime.rate_limits.hit(category, runner_id)
            return
    await runtime.rate_limits.hit(category, ip)


async def gate(request: Request, roles: tuple[Role, ...], category: RateCategory) -> Runtime:
    """What every request passes before its route's work: its key, then its rate limit.

    The routes that read their body themselves call it first; the dependencies below are
    the same two checks for the others."""
    runtime = runtime_of(request)
    authenticate(request, runtime, roles)
    await count_request(request, runtime, category)
    return runtime


def _require(*roles: Role) -> Any:
    async def check_key(request: Request) -> None:
        authenticate(request, runtime_of(request), roles)

    return Depends(check_key)


SubmitKey = _require(Role.SUBMIT)
RunnerKey = _require(Role.RUNNER)
AdminKey = _require(Role.ADMIN)
#: Read-only admin routes also take the runner key, as in the seed.
AdminReadKey = _require(Role.ADMIN, Role.RUNNER)


def _rate_limit(category: RateCategory) -> Any:
    async def counted_runtime(request: Request) -> Runtime:
        runtime = runtime_of(request)
        await count_request(request, runtime, category)
        return runtime

    return Annotated[Runtime, Depends(counted_runtime)]


#: The runtime, once the request was counted against its rate limit (declare it as the
#: route's ``runtime`` parameter, or in a router's dependencies via ``Depends``).
SubmitRate = _rate_limit(RateCategory.SUBMIT)
StatusRate = _rate_limit(RateCategory.STATUS)
RunnerRate = _rate_limit(RateCategory.RUNNER)
AdminRate = _rate_limit(RateCategory.ADMIN)
RegisterRate = _rate_limit(RateCategory.REGISTER)


async def get_runner(
    request: Request,
    x_runner_id: Annotated[str | None, Header(description="The id /register returned")] = None,
) -> Row[Any]:
    """The runner named by ``X-Runner-ID`` (400 when absent, 404 when unknown), noted as
    heard from (``runpack_api.seen_runners``)."""
    if not x_runner_id:
        raise InvalidRequest("missing X-Runner-ID header")
    if len(x_runner_id) > MAX_ID_LENGTH:
        raise InvalidRequest(f"X-Runner-ID is longer than {MAX_ID_LENGTH} characters")
    runner = await runtime_of(request).runners.get(x_runner_id)
    if runner is None:
        raise RunnerNotFound(f"unknown runner {x_runner_id}: register again")
    return runner


RunnerDep = Annotated[Row[Any], Depends(get_runner)]
