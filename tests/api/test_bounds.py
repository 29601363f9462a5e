"""Bounded resources and hostile input: what no client can grow without limit, and text
no backend can store, refused alike on both."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from runpack_api.metrics import MAX_TYPE_LABELS
from tests.support import (
    ApiServer,
    Backend,
    assert_error,
    nothing_changes,
    register,
    serving_in_process,
    submit,
    unique_params,
)

REGISTER_LIMIT = 5
RUNNER_HOST_LIMIT = 4


def own_address() -> str:
    """A loopback address of this test's own: rate counters in Redis outlive a run."""
    return f"127.{random.randrange(1, 250)}.{random.randrange(1, 250)}.{random.randrange(1, 250)}"


@pytest.fixture(scope="module")
def bounded(
    backend: Backend, module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    """A server allowing few registrations and no long poll."""
    extra = {
        "RUNPACK_RATE_REGISTER": f"{REGISTER_LIMIT}/minute",
        "RUNPACK_RATE_RUNNER_HOST": f"{RUNNER_HOST_LIMIT}/minute",
        "RUNPACK_MAX_LONG_POLLS": "0",
    }
    with serving_in_process(
        module_database_url, backend, tmp_path_factory.mktemp("bounded"), extra_env=extra
    ) as srv:
        yield srv


def test_registrations_from_one_ip_are_refused_past_the_limit(bounded: ApiServer) -> None:
    # Given a limit of a few registrations a minute per client IP
    answers = []
    # (addresses of their own: counters in Redis outlive a test run)
    address, other_address = (
        f"127.{random.randrange(1, 250)}.{n}.{random.randrange(1, 250)}" for n in (1, 2)
    )
    # When one address registers more runners than that
    with bounded.client("runner", source=address) as client:
        for n in range(REGISTER_LIMIT + 3):
            answers.append(
                client.post("/api/runner/register", json={"name": f"r{n}", "capabilities": []})
            )

    # Then the first ones are registered and the rest refused with 429 and Retry-After
    assert [a.status_code for a in answers[:REGISTER_LIMIT]] == [201] * REGISTER_LIMIT
    for answer in answers[REGISTER_LIMIT:]:
        assert_error(answer, 429)
        assert int(answer.headers["Retry-After"]) >= 1
    # And another address still registers
    with bounded.client("runner", source=other_address) as client:
        other = client.post("/api/runner/register", json={"name": "x", "capabilities": []})
    assert other.status_code == 201, other.text


def test_minting_runner_ids_buys_no_fresh_budget(server: ApiServer, bounded: ApiServer) -> None:
    # Given runners registered (each with its own budget per runner id)
    runners = [register(server, ["minted"], name=f"m{n}") for n in range(RUNNER_HOST_LIMIT + 1)]
    address = own_address()
    # When one address asks for jobs once under each id, more times than its host budget
    answers = []
    for runner_id in runners:
        with bounded.client("runner", runner_id, source=address) as client:
            answers.append(client.get("/api/runner/jobs/available"))
    # Then the requests past the per-address budget are refused, whatever id they name
    assert [a.status_code for a in answers[:RUNNER_HOST_LIMIT]] == [200] * RUNNER_HOST_LIMIT
    assert_error(answers[-1], 429)


def test_a_long_poll_past_the_bound_answers_at_once(server: ApiServer, bounded: ApiServer) -> None:
    # Given a server that holds no long poll (RUNPACK_MAX_LONG_POLLS=0)
    runner_id = register(server, ["bounded_poll"])
    # When a runner asks to wait 20 s for a job of a type nobody submitted
    started = time.monotonic()
    with bounded.client("runner", runner_id) as client:
        answer = client.get("/api/runner/jobs/available", params={"wait": 20})
    # Then it gets the no-job answer at once, not after 20 s
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"jobs": []}
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("offset", ["9223372036854775808", str(2**53), "-1"])
def test_an_offset_out_of_range_is_a_400(server: ApiServer, offset: str) -> None:
    with server.client("admin") as client:
        for path in ("/api/admin/jobs", "/api/admin/runners"):
            assert_error(client.get(path, params={"offset": offset}), 400)
            assert_error(client.get(path, params={"limit": "100000"}), 400)


NUL_BODIES = [
    pytest.param({"s": "a\u0000b"}, id="value"),
    pytest.param({"a\u0000": 1}, id="key"),
    pytest.param({"deep": [{"x": ["\u0000"]}]}, id="nested"),
]


@pytest.mark.parametrize("params", NUL_BODIES)
@pytest.mark.parametrize("route", ["submit", "check"])
def test_nul_in_input_params_is_refused_on_both_backends(
    server: ApiServer, server_engine: Engine, route: str, params: dict[str, Any]
) -> None:
    with nothing_changes(server_engine), server.client("submit") as client:
        answer = client.post(
            f"/api/jobs/{route}", json={"job_type": "nul_test", "input_params": params}
        )
    assert "NUL" in assert_error(answer, 400)


def test_nul_in_output_data_and_batch_delete_is_refused(
    server: ApiServer, server_engine: Engine
) -> None:
    # Given a job a runner claimed
    runner_id = register(server, ["nul_out"])
    job_id = submit(server, "nul_out", unique_params()).json()["job_id"]
    with server.client("runner", runner_id) as client:
        assert client.post(f"/api/runner/jobs/{job_id}/claim").status_code == 200
        # When it reports output holding a NUL, or an admin deletes an id holding one
        with nothing_changes(server_engine):
            complete = client.post(
                f"/api/runner/jobs/{job_id}/complete", json={"output_data": {"s": "\u0000"}}
            )
            with server.client("admin") as admin:
                delete = admin.post(
                    "/api/admin/jobs/batch-delete", json={"job_ids": [job_id, "a\u0000"]}
                )
    # Then both are refused with 400 (PostgreSQL cannot store NUL; SQLite is held to it)
    assert "NUL" in assert_error(complete, 400)
    assert "NUL" in assert_error(delete, 400)


def test_every_metric_family_is_capped_at_500_types_plus_other(
    server: ApiServer,
) -> None:
    # Given pending jobs of 700 job types
    with server.client("submit") as client:
        for n in range(700):
            answer = client.post(
                "/api/jobs/submit",
                json={"job_type": f"many_{n:03d}", "input_params": unique_params()},
            )
            assert answer.status_code == 201, answer.text
        metrics = client.get("/metrics").text

    # Then no family has more than MAX_TYPE_LABELS + 1 job_type labels
    labels: dict[str, set[str]] = {}
    for name, label in re.findall(r'^(\w+)\{job_type="([^"]*)"', metrics, re.MULTILINE):
        labels.setdefault(name.removesuffix("_total"), set()).add(label)
    assert len(labels["runpack_queue_depth"]) == MAX_TYPE_LABELS + 1
    assert "other" in labels["runpack_queue_depth"]
    assert all(len(found) <= MAX_TYPE_LABELS + 1 for found in labels.values()), {
        k: len(v) for k, v in labels.items()
    }


#: Every field a JSON route reads, given twice: well-typed, then not (the last one counts).
DUPLICATE_KEYS = (
    b'{"job_type": "a", "job_type": 1, "input_params": {}, "input_params": 1,'
    b' "name": "a", "name": 1, "capabilities": [], "capabilities": 1,'
    b' "progress_current": 1, "progress_current": "x", "output_data": {}, "output_data": 1,'
    b' "error_message": "e", "error_message": 1, "job_ids": ["a"], "job_ids": 1,'
    b' "cache_version": "v", "cache_version": 1}'
)
#: Every field a JSON route reads.
FIELDS = [
    "job_type",
    "name",
    "capabilities",
    "progress_current",
    "console_output",
    "error_message",
    "job_ids",
    "finished_before",
    "cache_version",
]


def everywhere(value: bytes) -> bytes:
    """A body with ``value`` in every field a JSON route reads (and in its objects)."""
    fields = [b'"%s": %s' % (name.encode(), value) for name in FIELDS]
    objects = [b'"input_params": {"v": %s}' % value, b'"output_data": {"v": %s}' % value]
    return b"{" + b", ".join(fields + objects) + b"}"


#: Bodies no route takes: deep nesting, huge numbers, lone surrogates, NUL, duplicate
#: keys around a wrong shape, wrong types.
HOSTILE = st.one_of(
    st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(53, 400).map(lambda e: everywhere(b"%d" % 2**e)),
    st.sampled_from([b'"\\ud800"', b'"\\udc00x"', b'"a\\u0000"']).map(everywhere),
    st.just(DUPLICATE_KEYS),
    st.sampled_from([b"true", b"[]", b"{}", b"-1", b"1.5"]).map(everywhere),
    st.sampled_from([b"null", b"[]", b"42", b'"job"', b"true"]),
    st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3),
        max_leaves=6,
    ).map(lambda v: repr(v).encode()),
    st.binary(max_size=40),
)
JSON_ROUTES = [
    ("submit", "/api/jobs/submit"),
    ("submit", "/api/jobs/check"),
    ("runner", "/api/runner/register"),
    ("runner", "/api/runner/jobs/{job}/claim"),
    ("runner", "/api/runner/jobs/{job}/heartbeat"),
    ("runner", "/api/runner/jobs/{job}/complete"),
    ("runner", "/api/runner/jobs/{job}/error"),
    ("admin", "/api/admin/jobs/batch-delete"),
    ("admin", "/api/admin/jobs/expire"),
]
CONTENT_TYPES = ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]


def test_hostile_bodies_get_a_4xx_and_change_nothing(
    server: ApiServer, server_engine: Engine
) -> None:
    # Given a runner, and a job it holds, so every route reaches its body
    runner_id = register(server, ["hostile"])
    job_id = submit(server, "hostile", unique_params()).json()["job_id"]
    with server.client("runner", runner_id) as client:
        assert client.post(f"/api/runner/jobs/{job_id}/claim").status_code == 200

    @settings(
        max_examples=settings.default.max_examples // 2,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.sampled_from(JSON_ROUTES), HOSTILE, st.sampled_from(CONTENT_TYPES))
    def probe(route: tuple[str, str], body: bytes, content_type: str) -> None:
        role, path = route
        headers = {"Content-Type": content_type} if content_type else {}
        note(f"{path} {content_type!r} {body!r}")
        with nothing_changes(server_engine), server.client(role, runner_id) as client:
            answer = client.post(path.format(job=job_id), content=body, headers=headers)
        # Then each is refused with a 4xx and an error (a claim, which reads no body,
        # gets the refused transition's answer), and nothing is stored
        assert 400 <= answer.status_code < 500, (path, body, answer.text)
        assert isinstance(answer.json()["error"], str), answer.text

    probe()


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/api/admin/jobs/some-id", "DELETE, GET"),
        ("/api/jobs/check", "POST"),  # its own path before /api/jobs/{job_id}, as OpenAPI
        ("/api/admin/jobs/batch-delete", "POST"),
        ("/api/runner/register", "POST"),
    ],
)
def test_a_405_names_every_method_served_at_the_path(
    server: ApiServer, path: str, allowed: str
) -> None:
    with server.client("admin") as client:
        answer = client.request("PATCH", path)
    assert_error(answer, 405)
    assert answer.headers["Allow"] == allowed
