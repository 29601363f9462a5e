"""CORS (SPEC §9): preflights for every /api/ route and /health, and
``Access-Control-Allow-Origin`` on every answer, refusals included; in process, on both
backends."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runpack_tasks.settings import RunpackSettings, SettingsError, get_settings
from tests.support import Backend, unique_params
from tests.support.direct_app import KEYS, settings_for
from tests.support.inprocess import app_client

#: A web page's origin, as its browser sends it.
PAGE = "http://127.0.0.1:5173"
OTHER_PAGE = "http://127.0.0.1:5174"
#: (method, path, headers the request carries beyond the safelisted ones): one per kind
#: of route, each behind a different key or none.
ROUTES = [
    ("POST", "/api/jobs/submit", "authorization,content-type"),
    ("POST", "/api/jobs/check", "authorization,content-type"),
    ("GET", "/api/jobs/some-job", "authorization"),
    ("GET", "/api/admin/stats", "authorization"),
    ("DELETE", "/api/admin/jobs/some-job", "authorization"),
    ("POST", "/api/admin/jobs/batch-delete", "authorization,content-type"),
    ("POST", "/api/runner/register", "authorization,content-type"),
    ("POST", "/api/runner/jobs/some-job/claim", "authorization,x-runner-id"),
    ("GET", "/api/runner/jobs/available", "authorization,x-runner-id"),
    ("GET", "/health", ""),
]


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[role]}", "Origin": PAGE}


@pytest.fixture
def settings(database_url: str, backend: Backend, tmp_path: Path) -> RunpackSettings:
    return settings_for(database_url, backend, tmp_path)


@pytest.fixture
def client_for(settings: RunpackSettings) -> Iterator[Any]:
    """Opens a client on an app built from ``settings`` changed by the given fields."""
    with contextlib.ExitStack() as opened:

        def open_client(**changes: Any) -> httpx.Client:
            return opened.enter_context(app_client(settings.model_copy(update=changes)))

        yield open_client


def preflight(client: httpx.Client, method: str, path: str, headers: str, origin: str = PAGE):
    """The browser's OPTIONS before a request it may not send unasked."""
    asked = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        asked["Access-Control-Request-Headers"] = headers
    return client.options(path, headers=asked)


def header_names(answer: httpx.Response, name: str) -> set[str]:
    return {part.strip().lower() for part in answer.headers.get(name, "").split(",")}


@pytest.mark.parametrize(("method", "path", "headers"), ROUTES)
def test_a_preflight_is_answered_for_every_kind_of_route(
    client_for: Any, method: str, path: str, headers: str
) -> None:
    # Given the default settings (any origin)
    client = client_for()

    # When a page's browser asks before sending the request
    answer = preflight(client, method, path, headers)

    # Then it may send it, with the key, a JSON body and a runner id
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == "*"
    assert method.lower() in header_names(answer, "access-control-allow-methods")
    assert {"authorization", "content-type", "x-runner-id"} <= header_names(
        answer, "access-control-allow-headers"
    )
    assert int(answer.headers["access-control-max-age"]) > 0
    assert "access-control-allow-credentials" not in answer.headers


def test_every_answer_carries_the_allowed_origin(client_for: Any) -> None:
    # Given a job that a runner completed, and a client on a page of another origin
    client = client_for()
    job = {"job_type": "cors", "input_params": unique_params()}
    submitted = client.post("/api/jobs/submit", json=job, headers=auth("submit"))
    job_id = submitted.json()["job_id"]
    runner_id = client.post(
        "/api/runner/register",
        json={"name": "cors", "capabilities": ["cors"]},
        headers=auth("runner"),
    ).json()["runner_id"]
    as_runner = {**auth("runner"), "X-Runner-ID": runner_id}
    assert client.post(f"/api/runner/jobs/{job_id}/claim", headers=as_runner).status_code == 200
    done = {"output_data": {"n": 1}, "console_output": ""}
    complete = f"/api/runner/jobs/{job_id}/complete"
    assert client.post(complete, json=done, headers=as_runner).status_code == 200

    # When it reads the job twice (the second from the result cache) and makes mistakes
    answers = {
        "created": submitted,
        "status": client.get(f"/api/jobs/{job_id}", headers=auth("submit")),
        "cached status": client.get(f"/api/jobs/{job_id}", headers=auth("submit")),
        "stats": client.get("/api/admin/stats", headers=auth("admin")),
        "no key": client.post("/api/jobs/submit", json=job, headers={"Origin": PAGE}),
        "runner key on admin": client.delete(f"/api/admin/jobs/{job_id}", headers=auth("runner")),
        "unknown job": client.get("/api/jobs/no-such-job", headers=auth("submit")),
        "unknown admin job": client.get("/api/admin/jobs/no-such-job", headers=auth("admin")),
        "body over the cap": client.post(
            "/api/jobs/submit", content=b"x" * 200_000, headers=auth("submit")
        ),
        "console over the cap": client.post(
            f"/api/runner/jobs/{job_id}/heartbeat",
            content=b"x" * 1_100_000,
            headers=as_runner,
        ),
    }

    # Then each answer, whatever its code, is readable by the page
    codes = {name: answer.status_code for name, answer in answers.items()}
    assert codes == {
        "created": 201,
        "status": 200,
        "cached status": 200,
        "stats": 200,
        "no key": 401,
        "runner key on admin": 401,
        "unknown job": 404,
        "unknown admin job": 404,
        "body over the cap": 413,
        "console over the cap": 413,
    }
    assert answers["cached status"].json()["status"] == "completed"
    for name, answer in answers.items():
        assert answer.headers.get("access-control-allow-origin") == "*", name


def test_a_rate_limited_answer_carries_the_origin_and_exposes_retry_after(
    client_for: Any,
) -> None:
    # Given a status rate limit of one request a minute
    client = client_for(rate_status="1/minute")

    # When a page asks for a job's status until it is refused
    answers = [client.get("/api/jobs/no-such-job", headers=auth("submit")) for _ in range(3)]

    # Then the 429 is readable, Retry-After included
    refused = [answer for answer in answers if answer.status_code == 429]
    assert refused, [answer.status_code for answer in answers]
    assert refused[0].headers["access-control-allow-origin"] == "*"
    assert int(refused[0].headers["retry-after"]) > 0
    assert "retry-after" in header_names(refused[0], "access-control-expose-headers")


def test_only_the_configured_origins_are_allowed(client_for: Any) -> None:
    # Given the API opened to one page's origin
    client = client_for(cors_origins=[PAGE])

    # Then that page may call it
    allowed = preflight(client, "POST", "/api/jobs/submit", "authorization,content-type")
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == PAGE
    health = client.get("/health", headers={"Origin": PAGE})
    assert health.headers["access-control-allow-origin"] == PAGE

    # And a page of another origin may not
    refused = preflight(client, "POST", "/api/jobs/submit", "authorization", OTHER_PAGE)
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    stats = client.get("/api/admin/stats", headers={**auth("admin"), "Origin": OTHER_PAGE})
    assert stats.status_code == 200
    assert "access-control-allow-origin" not in stats.headers


def test_no_origins_turn_cors_off(client_for: Any) -> None:
    # Given RUNPACK_CORS_ORIGINS empty
    client = client_for(cors_origins=[])

    # Then no preflight is answered and no answer names an origin
    asked = preflight(client, "POST", "/api/jobs/submit", "authorization")
    assert asked.status_code == 405
    assert "access-control-allow-origin" not in asked.headers
    assert (
        "access-control-allow-origin" not in client.get("/health", headers=auth("submit")).headers
    )


def test_other_paths_stay_same_origin(client_for: Any) -> None:
    # Given the default settings (any origin), the dashboard, /docs and /metrics are not
    # opened to other sites' scripts
    client = client_for()
    for path in ("/", "/docs", "/metrics", "/static/app.js"):
        answer = client.get(path, headers={"Origin": PAGE})
        assert answer.status_code == 200, path
        assert "access-control-allow-origin" not in answer.headers, path


@pytest.mark.parametrize(
    ("value", "origins"),
    [
        (None, ["*"]),
        ("", []),
        (
            "https://a.example, http://127.0.0.1:8080/",
            ["https://a.example", "http://127.0.0.1:8080"],
        ),
    ],
)
def test_cors_origins_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str | None, origins: list[str]
) -> None:
    if value is None:
        monkeypatch.delenv("RUNPACK_CORS_ORIGINS", raising=False)
    else:
        monkeypatch.setenv("RUNPACK_CORS_ORIGINS", value)
    assert get_settings().cors_origins == origins


def test_a_cors_origin_with_a_path_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPACK_CORS_ORIGINS", "https://a.example/app")
    with pytest.raises(SettingsError, match="RUNPACK_CORS_ORIGINS"):
        get_settings()
