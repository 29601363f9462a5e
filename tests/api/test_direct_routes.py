"""The DirectRoutes stage answers exactly as FastAPI's router answers the same endpoints.

Two applications share one database: the real one, and one built the same way with the
stage taken out, so FastAPI's router, dependencies and exception middleware serve
``/api/jobs`` there. Every request below goes to both, in the same order, and the answers
must be equal (status, error text, and body with ids masked).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from runpack_api.app import create_app
from runpack_api.direct import DirectRoutes
from runpack_tasks.settings import RunpackSettings
from tests.support import Backend
from tests.support.answers import masked
from tests.support.direct_app import KEYS, settings_for

JSON = {"Content-Type": "application/json"}
JOB = b'{"job_type": "direct", "input_params": {"n": 1}}'
#: The job each application submits at the end: its own, so both create it.
OWN_JOB = '{{"job_type": "direct", "input_params": {{"app": "{}"}}}}'


def without_stage(app: FastAPI) -> FastAPI:
    """``app`` with DirectRoutes taken out (its middleware stack is built on first call)."""
    app.user_middleware = [m for m in app.user_middleware if m.cls is not DirectRoutes]
    return app


def auth(role: str | None = "submit") -> dict[str, str]:
    return {} if role is None else {"Authorization": f"Bearer {KEYS[role]}"}


#: (method, path, headers, body): the refusals first, so both apps see the same states.
REQUESTS: list[tuple[str, str, dict[str, str], bytes | None]] = [
    ("POST", "/api/jobs/submit", {**JSON}, JOB),  # no key
    ("POST", "/api/jobs/submit", {**JSON, **auth("runner")}, JOB),  # another role's key
    ("POST", "/api/jobs/submit", {**auth()}, JOB),  # no Content-Type
    ("POST", "/api/jobs/check", {"Content-Type": "text/plain", **auth()}, JOB),
    ("POST", "/api/jobs/submit", {**JSON, **auth()}, b'{"job_type": "direct"'),
    ("POST", "/api/jobs/submit", {**JSON, **auth()}, b'{"job_type": "x y", "input_params": {}}'),
    ("POST", "/api/jobs/check", {**JSON, **auth()}, b'{"job_type": "direct"}'),
    ("POST", "/api/jobs/submit", {**JSON, **auth()}, b""),
    (
        "POST",
        "/api/jobs/submit",
        {**JSON, **auth()},
        b'{"job_type": "d", "input_params": {"n": 9007199254740993}}',
    ),
    ("GET", "/api/jobs/submit", {**auth()}, None),  # a GET of a POST route: an unknown job
    ("PUT", "/api/jobs/submit", {**JSON, **auth()}, JOB),  # wrong method
    ("GET", "/api/jobs/no-such-job", {**auth()}, None),
    ("GET", "/api/jobs/a%00b", {**auth()}, None),
    ("POST", "/api/jobs/check", {**JSON, **auth()}, JOB),  # not there yet
]


async def answers(app: FastAPI, tag: str) -> list[tuple[int, Any]]:
    """Every request's answer from ``app``, then a submit of its own job, a check and a
    status of it."""
    job = OWN_JOB.format(tag).encode()
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        got = []
        for method, path, headers, body in REQUESTS:
            got.append(masked(await client.request(method, path, headers=headers, content=body)))
        submit = await client.post("/api/jobs/submit", headers={**JSON, **auth()}, content=job)
        got.append(masked(submit))
        got.append(
            masked(await client.post("/api/jobs/check", headers={**JSON, **auth()}, content=job))
        )
        status = await client.get(f"/api/jobs/{submit.json()['job_id']}", headers=auth())
        got.append(masked(status))
        return got


@pytest.fixture
def settings(database_url: str, backend: Backend, tmp_path: Path) -> Iterator[RunpackSettings]:
    yield settings_for(database_url, backend, tmp_path)


def test_the_stage_answers_as_the_router_does(settings: RunpackSettings) -> None:
    # Given the application, and the same application without its DirectRoutes stage
    direct, routed = create_app(settings), without_stage(create_app(settings))

    async def both() -> tuple[list[tuple[int, Any]], list[tuple[int, Any]]]:
        async with direct.router.lifespan_context(direct), routed.router.lifespan_context(routed):
            # When every request goes to each (the same job: created once, then found)
            return await answers(direct, "direct"), await answers(routed, "routed")

    through_stage, through_router = asyncio.run(both())

    # Then the answers are the same
    statuses = [status for status, _ in through_stage]
    assert statuses[: len(REQUESTS)] == [
        401,
        401,
        400,
        400,
        400,
        400,
        400,
        400,
        400,
        404,
        405,
        404,
        400,
        200,
    ]
    assert statuses[len(REQUESTS) :] == [201, 200, 200]
    assert through_stage == through_router
