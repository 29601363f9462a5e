"""Which key opens which route (SPEC §4), over HTTP: every route against every role."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tests.support import ApiServer, assert_error, nothing_changes, register, submit, unique_params

JOB_TYPE = "auth_matrix"
SUBMIT_ONLY = frozenset({"submit"})
RUNNER_ONLY = frozenset({"runner"})
ADMIN_OR_RUNNER = frozenset({"admin", "runner"})
ADMIN_ONLY = frozenset({"admin"})


@dataclass(frozen=True)
class Route:
    """One route, what it needs to succeed, and the roles whose key opens it."""

    method: str
    path: str
    allowed: frozenset[str]
    success: int = 200
    #: The job the path's ``{job}`` names: "pending", "claimed" (by the test's runner) or none.
    job: str | None = None
    body: dict[str, Any] | None = None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


ROUTES = [
    Route(
        "POST",
        "/api/jobs/submit",
        SUBMIT_ONLY,
        success=201,
        body={"job_type": JOB_TYPE, "input_params": {}},
    ),
    Route("POST", "/api/jobs/check", SUBMIT_ONLY, body={"job_type": JOB_TYPE, "input_params": {}}),
    Route("GET", "/api/jobs/{job}", SUBMIT_ONLY, job="pending"),
    Route(
        "POST",
        "/api/runner/register",
        RUNNER_ONLY,
        success=201,
        body={"name": "newcomer", "capabilities": [JOB_TYPE]},
    ),
    Route("GET", "/api/runner/verify", RUNNER_ONLY),
    Route("GET", f"/api/runner/jobs/available?types[]={JOB_TYPE}", RUNNER_ONLY),
    Route("POST", "/api/runner/jobs/{job}/claim", RUNNER_ONLY, job="pending"),
    Route(
        "POST",
        "/api/runner/jobs/{job}/heartbeat",
        RUNNER_ONLY,
        job="claimed",
        body={"progress_current": 1, "progress_total": 2, "console_output": "log"},
    ),
    Route(
        "POST",
        "/api/runner/jobs/{job}/complete",
        RUNNER_ONLY,
        job="claimed",
        body={"output_data": {"ok": True}},
    ),
    Route(
        "POST",
        "/api/runner/jobs/{job}/error",
        RUNNER_ONLY,
        job="claimed",
        body={"error_message": "boom"},
    ),
    Route("POST", "/api/runner/jobs/{job}/release", RUNNER_ONLY, job="claimed"),
    Route("GET", "/api/admin/jobs", ADMIN_OR_RUNNER),
    Route("GET", "/api/admin/jobs/{job}", ADMIN_OR_RUNNER, job="pending"),
    Route("GET", "/api/admin/runners", ADMIN_OR_RUNNER),
    Route("GET", "/api/admin/runners/{runner}", ADMIN_OR_RUNNER),
    Route("GET", "/api/admin/stats", ADMIN_OR_RUNNER),
    Route("DELETE", "/api/admin/jobs/{job}", ADMIN_ONLY, job="pending"),
    Route("POST", "/api/admin/jobs/batch-delete", ADMIN_ONLY, job="pending"),
    Route("POST", "/api/admin/jobs/{job}/cancel", ADMIN_ONLY, job="pending"),
]


@pytest.fixture(scope="module")
def runner_id(server: ApiServer) -> str:
    """A registered runner, named in X-Runner-ID on every request of this module."""
    return register(server, [JOB_TYPE], name="auth-runner")


def new_job(server: ApiServer, runner_id: str, state: str | None) -> str | None:
    """A new job in ``state`` ("pending" or "claimed" by ``runner_id``), or none."""
    if state is None:
        return None
    created = submit(server, JOB_TYPE, unique_params())
    assert created.status_code == 201, created.text
    job_id: str = created.json()["job_id"]
    if state == "claimed":
        with server.client("runner", runner_id) as runner:
            claim = runner.post(f"/api/runner/jobs/{job_id}/claim")
        assert claim.status_code == 200, claim.text
    return job_id


def call(
    server: ApiServer,
    route: Route,
    authorization: str | None,
    runner_id: str,
    job_id: str | None,
) -> httpx.Response:
    """``route`` with exactly this Authorization header (none when ``None``)."""
    headers = {"X-Runner-ID": runner_id}
    if authorization is not None:
        headers["Authorization"] = authorization
    body = route.body
    if route.path.endswith("batch-delete"):
        body = {"job_ids": [job_id]}
    elif body is not None and "input_params" in body:
        body = {**body, "input_params": unique_params()}
    path = route.path.format(job=job_id, runner=runner_id)
    with server.client() as client:
        return client.request(route.method, path, headers=headers, json=body)


def bearer(server: ApiServer, role: str) -> str | None:
    """The Authorization header of ``role`` ("none": no header at all)."""
    return None if role == "none" else f"Bearer {getattr(server.keys, role)}"


@pytest.mark.parametrize("role", ["submit", "runner", "admin", "none"])
@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_each_route_opens_to_its_roles_only(
    server: ApiServer, server_engine: Engine, runner_id: str, route: Route, role: str
) -> None:
    # Given what the route acts on (a pending or claimed job, a runner)
    job_id = new_job(server, runner_id, route.job)

    if role in route.allowed:
        # When a key of an allowed role calls it
        answer = call(server, route, bearer(server, role), runner_id, job_id)

        # Then it succeeds
        assert answer.status_code == route.success, answer.text
    else:
        # When another role's key (or no key) calls it
        with nothing_changes(server_engine, with_last_seen=True):
            answer = call(server, route, bearer(server, role), runner_id, job_id)

        # Then it is refused with 401, and nothing changed, not even the runner's last_seen
        assert_error(answer, 401)


@pytest.mark.parametrize("route", [r for r in ROUTES if r.job is None], ids=str)
def test_another_roles_key_is_refused_exactly_like_a_wrong_key(
    server: ApiServer,
    runner_id: str,
    route: Route,
) -> None:
    # Given a key no role has, and the key of a role the route does not take
    other_role = next(role for role in ("submit", "runner", "admin") if role not in route.allowed)

    # When each calls the route
    wrong = call(server, route, "Bearer not-a-key-of-this-server", runner_id, None)
    other = call(server, route, bearer(server, other_role), runner_id, None)

    # Then the answers are the same: a refusal does not tell which keys exist
    assert_error(wrong, 401)
    assert (other.status_code, other.json()) == (wrong.status_code, wrong.json())


@pytest.mark.parametrize("path", ["/health", "/docs", "/openapi.json"])
@pytest.mark.parametrize(
    "authorization", [None, "Bearer not-a-key-of-this-server"], ids=["no-key", "wrong-key"]
)
def test_public_routes_need_no_key(server: ApiServer, path: str, authorization: str | None) -> None:
    # Given no Authorization header (or one with a key nobody has)
    headers = {} if authorization is None else {"Authorization": authorization}

    # When a public route is called
    with server.client(headers=headers) as anyone:
        answer = anyone.get(path)

    # Then it answers
    assert answer.status_code == 200, answer.text


#: One route per role that only that role's key opens (admin: stats, which runners also read).
ROLE_ROUTE = {
    "submit": Route(
        "POST", "/api/jobs/check", SUBMIT_ONLY, body={"job_type": JOB_TYPE, "input_params": {}}
    ),
    "runner": Route("GET", "/api/runner/verify", RUNNER_ONLY),
    "admin": Route("GET", "/api/admin/stats", ADMIN_OR_RUNNER),
}


def other_case(key: str) -> str:
    """``key`` with the case of every letter swapped."""
    swapped = key.swapcase()
    assert swapped != key, "a key without letters cannot test case"
    return swapped


@pytest.mark.parametrize("role", ["submit", "runner", "admin"])
def test_keys_are_case_sensitive(server: ApiServer, runner_id: str, role: str) -> None:
    # Given a role's key, and the same key with its letters' case swapped
    route = ROLE_ROUTE[role]
    key: str = getattr(server.keys, role)

    # When each calls a route of that role
    right = call(server, route, f"Bearer {key}", runner_id, None)
    wrong_case = call(server, route, f"Bearer {other_case(key)}", runner_id, None)

    # Then only the exact key is accepted
    assert right.status_code == 200, right.text
    assert_error(wrong_case, 401)


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
@pytest.mark.parametrize("role", ["submit", "runner", "admin"])
def test_bearer_scheme_is_case_insensitive(
    server: ApiServer, runner_id: str, role: str, scheme: str
) -> None:
    # Given a role's key under the scheme name spelled in another case
    authorization = f"{scheme} {getattr(server.keys, role)}"

    # When it calls a route of that role
    answer = call(server, ROLE_ROUTE[role], authorization, runner_id, None)

    # Then it is accepted
    assert answer.status_code == 200, answer.text
