"""Requests and answers every API test shares: register a runner, submit a job, the error body."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.support.server import ApiServer


def unique_params(**extra: Any) -> dict[str, Any]:
    """Parameters no other test submits."""
    return {"test_id": uuid.uuid4().hex, **extra}


def register(server: ApiServer, capabilities: list[str], name: str = "runner") -> str:
    """Register an HTTP runner; its id."""
    with server.client("runner") as client:
        answer = client.post(
            "/api/runner/register", json={"name": name, "capabilities": capabilities}
        )
    assert answer.status_code == 201, answer.text
    runner_id: str = answer.json()["runner_id"]
    return runner_id


def submit(server: ApiServer, job_type: str, params: dict[str, Any]) -> httpx.Response:
    """Submit a job with the submit key."""
    with server.client("submit") as client:
        return client.post("/api/jobs/submit", json={"job_type": job_type, "input_params": params})


def assert_error(answer: httpx.Response, status: int) -> str:
    """The answer has ``status`` and the one error body; returns its message."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert isinstance(body, dict) and list(body) == ["error"], body
    assert isinstance(body["error"], str) and body["error"].strip(), body
    message: str = body["error"]
    return message
