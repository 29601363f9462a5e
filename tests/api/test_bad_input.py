"""Bad input over HTTP: each mistake gets its exact 4xx as {"error": ...}, changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import Engine

from runpack_api.bodylimit import DEFAULT_CAP_BYTES, ENVELOPE_BYTES
from runpack_api.jsonbody import NOT_JSON
from runpack_tasks.jobstore.payloads import MAX_JSON_DEPTH
from tests.support import (
    ApiServer,
    Backend,
    Keys,
    assert_error,
    database_state,
    nothing_changes,
    register,
    serving_in_process,
    stored_job,
    submit,
    unique_params,
)

MAX_INPUT_BYTES = 1000
MAX_OUTPUT_BYTES = 1000
MAX_CONSOLE_BYTES = 1000
MAX_ERROR_BYTES = 500
SMALL_LIMITS = {
    "RUNPACK_MAX_INPUT_BYTES": str(MAX_INPUT_BYTES),
    "RUNPACK_MAX_OUTPUT_BYTES": str(MAX_OUTPUT_BYTES),
    "RUNPACK_MAX_CONSOLE_BYTES": str(MAX_CONSOLE_BYTES),
    "RUNPACK_MAX_ERROR_BYTES": str(MAX_ERROR_BYTES),
}
#: The raw body caps the small limits imply (runpack_api.bodylimit.body_caps).
RAW_CAPS = {
    "submit": MAX_INPUT_BYTES + ENVELOPE_BYTES,
    "check": MAX_INPUT_BYTES + ENVELOPE_BYTES,
    "heartbeat": MAX_CONSOLE_BYTES + ENVELOPE_BYTES,
    "complete": MAX_OUTPUT_BYTES + MAX_CONSOLE_BYTES + ENVELOPE_BYTES,
    "error": MAX_ERROR_BYTES + MAX_CONSOLE_BYTES + ENVELOPE_BYTES,
    "register": DEFAULT_CAP_BYTES,
}
#: The default input_params limit, which the module's main server keeps.
DEFAULT_MAX_INPUT_BYTES = 102_400
JOB_TYPE = "bad_input"
JSON_HEADERS = {"Content-Type": "application/json"}


# --- helpers ------------------------------------------------------------------------------


def send(
    server: ApiServer,
    method: str,
    path: str,
    *,
    role: str = "submit",
    runner_id: str | None = None,
    content: Any = None,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """One request as ``role``; ``content`` goes out raw as application/json."""
    with server.client(role, runner_id) as client:
        if content is not None:
            headers = {**JSON_HEADERS, **(headers or {})}
            return client.request(method, path, content=content, headers=headers, **kwargs)
        return client.request(method, path, json=json_body, headers=headers, **kwargs)


def nested_dict(depth: int) -> dict[str, Any]:
    """An object nesting ``depth`` levels deep (``{}`` is one level)."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(
    backend: Backend, module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    """A second server on the module's database, with small size limits."""
    with serving_in_process(
        module_database_url, backend, tmp_path_factory.mktemp("limited"), extra_env=SMALL_LIMITS
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def runner_id(server: ApiServer) -> str:
    """A registered runner (both servers share the database, so both know it)."""
    return register(server, [JOB_TYPE], name="bad-input-runner")


@pytest.fixture(scope="module")
def other_runner_id(server: ApiServer) -> str:
    """A second registered runner."""
    return register(server, [JOB_TYPE], name="bad-input-other")


@pytest.fixture
def pending_job(server: ApiServer) -> str:
    """A new pending job."""
    answer = submit(server, JOB_TYPE, unique_params())
    assert answer.status_code == 201, answer.text
    job_id: str = answer.json()["job_id"]
    return job_id


@pytest.fixture
def claimed_job(server: ApiServer, runner_id: str, pending_job: str) -> str:
    """A new job claimed by ``runner_id``."""
    claim = send(
        server, "POST", f"/api/runner/jobs/{pending_job}/claim", role="runner", runner_id=runner_id
    )
    assert claim.status_code == 200, claim.text
    return pending_job


@pytest.fixture
def running_job(server: ApiServer, runner_id: str, claimed_job: str) -> str:
    """A claimed job with progress and a console log stored by one heartbeat."""
    beat = send(
        server,
        "POST",
        f"/api/runner/jobs/{claimed_job}/heartbeat",
        role="runner",
        runner_id=runner_id,
        json_body={"progress_current": 1, "progress_total": 2, "console_output": "before"},
    )
    assert beat.status_code == 200, beat.text
    return claimed_job


# --- malformed bodies (400) ---------------------------------------------------------------


def job_body(job_type: Any = JOB_TYPE, **extra: Any) -> bytes:
    """A submit/check body with unique params, ``extra`` fields replacing or adding."""
    return orjson.dumps({"job_type": job_type, "input_params": unique_params(), **extra})


def without(field: str) -> bytes:
    """A submit/check body missing ``field``."""
    body = {"job_type": JOB_TYPE, "input_params": unique_params()}
    del body[field]
    return orjson.dumps(body)


JOB_BODIES = [
    pytest.param(b'{"job_type": "bad_input", "input_params": {', id="truncated-json"),
    pytest.param(b'{"job_type": "bad_input", "input_params": {}} x', id="trailing-garbage"),
    pytest.param(b'{"job_type": "bad_input", "input_params": {},}', id="trailing-comma"),
    pytest.param(b"{'job_type': 'bad_input', 'input_params': {}}", id="single-quotes"),
    pytest.param(b"", id="empty-body"),
    pytest.param(b"[]", id="empty-array"),
    pytest.param(b'[{"job_type": "bad_input", "input_params": {}}]', id="array-of-a-job"),
    pytest.param(b"null", id="null"),
    pytest.param(b'"bad_input"', id="string"),
    pytest.param(b"42", id="number"),
    pytest.param(job_body(5), id="job_type-number"),
    pytest.param(job_body(None), id="job_type-null"),
    pytest.param(job_body(["bad_input"]), id="job_type-list"),
    pytest.param(job_body(input_params="{}"), id="input_params-string"),
    pytest.param(job_body(input_params=[1, 2]), id="input_params-list"),
    pytest.param(job_body(input_params=None), id="input_params-null"),
    pytest.param(job_body(input_params=7), id="input_params-number"),
    pytest.param(without("job_type"), id="missing-job_type"),
    pytest.param(without("input_params"), id="missing-input_params"),
    pytest.param(b"{}", id="empty-object"),
    pytest.param(job_body(""), id="job_type-empty"),
    pytest.param(job_body("a" * 1000), id="job_type-1000-chars"),
    pytest.param(job_body("a" * 129), id="job_type-129-chars"),
    pytest.param(job_body("bad input"), id="job_type-space"),
    pytest.param(job_body("bad/input"), id="job_type-slash"),
    pytest.param(job_body("bad_input\n"), id="job_type-trailing-newline"),
    pytest.param(job_body("b\u00e4d"), id="job_type-non-ascii"),
    pytest.param(
        b'{"job_type": "bad_input", "input_params": {"s": "\xff\xfe"}}', id="invalid-utf8"
    ),
    pytest.param(
        b'{"job_type": "bad_input", "input_params": {"s": "\xc0\xaf"}}', id="overlong-utf8"
    ),
    pytest.param(
        b'{"job_type": "bad_input", "input_params": {"s": "\xed\xa0\x80"}}',
        id="utf8-encoded-surrogate",
    ),
    pytest.param(
        b'{"job_type": "bad_input", "input_params": {"s": "\\ud800"}}', id="lone-surrogate-escape"
    ),
    pytest.param(b'{"job_type": "bad_input", "input_params": {"n": NaN}}', id="NaN"),
    pytest.param(b'{"job_type": "bad_input", "input_params": {"n": 1e400}}', id="infinite"),
]


@pytest.mark.parametrize("route", ["submit", "check"])
@pytest.mark.parametrize("body", JOB_BODIES)
def test_malformed_job_body_is_refused(
    server: ApiServer, server_engine: Engine, route: str, body: bytes
) -> None:
    # Given a body that is not a valid job
    # When it is submitted or checked
    with nothing_changes(server_engine):
        answer = send(server, "POST", f"/api/jobs/{route}", content=body)

    # Then it is refused with 400 and no job is created
    assert_error(answer, 400)


@pytest.mark.parametrize("content_type", ["text/plain", None], ids=["text-plain", "absent"])
@pytest.mark.parametrize("route", ["submit", "check"])
def test_json_body_not_declared_as_json_is_refused(
    server: ApiServer, server_engine: Engine, route: str, content_type: str | None
) -> None:
    # Given a valid job body labelled as plain text, or with no Content-Type at all
    with server.client("submit") as client:
        request = client.build_request("POST", f"/api/jobs/{route}", content=job_body())
        request.headers.pop("Content-Type", None)
        if content_type is not None:
            request.headers["Content-Type"] = content_type

        # When it is submitted or checked
        with nothing_changes(server_engine):
            answer = client.send(request)

    # Then submit and check both refuse it alike, not parse it anyway
    assert assert_error(answer, 400) == NOT_JSON


@pytest.mark.parametrize(
    "number",
    [
        pytest.param(2**53, id="2**53"),
        pytest.param(2**53 + 1, id="2**53+1"),
        pytest.param(-(2**53 + 1), id="-(2**53+1)"),
        pytest.param(2**63, id="2**63"),
        pytest.param(2**64 + 1, id="2**64+1"),
        pytest.param(10**20, id="10**20"),
    ],
)
@pytest.mark.parametrize("route", ["submit", "check"])
def test_integer_beyond_the_safe_range_is_refused(
    server: ApiServer, server_engine: Engine, route: str, number: int
) -> None:
    # Given input_params holding an integer JSON numbers cannot represent exactly
    body = f'{{"job_type": "{JOB_TYPE}", "input_params": {{"n": {number}}}}}'.encode()

    # When it is submitted or checked
    with nothing_changes(server_engine):
        answer = send(server, "POST", f"/api/jobs/{route}", content=body)

    # Then it is refused with 400: the job's identity would be ambiguous
    assert_error(answer, 400)


def test_largest_safe_integer_is_accepted(server: ApiServer) -> None:
    # Given input_params holding 2**53 - 1, the largest safe integer
    params = unique_params(n=2**53 - 1)

    # When it is submitted
    answer = submit(server, JOB_TYPE, params)

    # Then the job is created (the limit is not off by one)
    assert answer.status_code == 201, answer.text


# --- nesting depth ------------------------------------------------------------------------


def test_100000_deep_input_params_is_refused(server: ApiServer, server_engine: Engine) -> None:
    # Given input_params nesting 100 000 arrays (200 KB, over the default raw cap)
    body = b'{"job_type": "bad_input", "input_params": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    # When it is submitted
    with nothing_changes(server_engine):
        answer = send(server, "POST", "/api/jobs/submit", content=body)

    # Then it is refused with a 4xx, never a crash
    assert answer.status_code in (400, 413), answer.text
    assert_error(answer, answer.status_code)


@pytest.mark.parametrize("route", ["submit", "check"])
@pytest.mark.parametrize("depth", [2000, 100, MAX_JSON_DEPTH + 1])
def test_deep_input_params_is_refused(
    server: ApiServer, server_engine: Engine, route: str, depth: int
) -> None:
    # Given an input_params object whose nesting is over the limit but whose body is small
    inner = b"[" * (depth - 1) + b"]" * (depth - 1)
    body = b'{"job_type": "bad_input", "input_params": {"a": ' + inner + b"}}"
    assert len(body) < DEFAULT_MAX_INPUT_BYTES

    # When it is submitted or checked
    with nothing_changes(server_engine):
        answer = send(server, "POST", f"/api/jobs/{route}", content=body)

    # Then it is refused with 400
    assert_error(answer, 400)


def test_input_params_at_the_depth_limit_is_accepted(server: ApiServer) -> None:
    # Given input_params nesting exactly as deep as allowed
    params = nested_dict(MAX_JSON_DEPTH)
    params["test_id"] = unique_params()["test_id"]

    # When it is submitted
    answer = submit(server, JOB_TYPE, params)

    # Then the job is created
    assert answer.status_code == 201, answer.text


def test_deep_output_data_is_refused(
    server: ApiServer, server_engine: Engine, runner_id: str, running_job: str
) -> None:
    # Given a job this runner is running
    # When it completes it with output_data nested 100 levels deep
    with nothing_changes(server_engine):
        answer = send(
            server,
            "POST",
            f"/api/runner/jobs/{running_job}/complete",
            role="runner",
            runner_id=runner_id,
            json_body={"output_data": nested_dict(100)},
        )

    # Then the report is refused and the job is still running
    assert_error(answer, 400)
    assert stored_job(server_engine, running_job)["status"] == "in_progress"


# --- runner bodies (400) ------------------------------------------------------------------


REGISTER_BODIES = [
    pytest.param(b'{"name": "r", "capabilities": [', id="truncated-json"),
    pytest.param(b'[{"name": "r", "capabilities": []}]', id="array"),
    pytest.param(b'{"capabilities": ["bad_input"]}', id="missing-name"),
    pytest.param(b'{"name": "r"}', id="missing-capabilities"),
    pytest.param(b'{"name": 5, "capabilities": []}', id="name-number"),
    pytest.param(b'{"name": "", "capabilities": []}', id="name-empty"),
    pytest.param(orjson.dumps({"name": "r" * 129, "capabilities": []}), id="name-129-chars"),
    pytest.param(b'{"name": "r", "capabilities": "bad_input"}', id="capabilities-string"),
    pytest.param(b'{"name": "r", "capabilities": {"bad_input": true}}', id="capabilities-object"),
    pytest.param(b'{"name": "r", "capabilities": [5]}', id="capability-number"),
    pytest.param(b'{"name": "r", "capabilities": ["bad input"]}', id="capability-space"),
    pytest.param(b'{"name": "r", "capabilities": ["a/b"]}', id="capability-slash"),
    pytest.param(orjson.dumps({"name": "r", "capabilities": ["x"] * 257}), id="257-capabilities"),
    pytest.param(b'{"name": "r\xff", "capabilities": []}', id="invalid-utf8"),
]


@pytest.mark.parametrize("body", REGISTER_BODIES)
def test_malformed_register_body_is_refused(
    server: ApiServer, server_engine: Engine, body: bytes
) -> None:
    # Given a registration body that is not valid
    # When a runner sends it
    with nothing_changes(server_engine, with_last_seen=True):
        answer = send(server, "POST", "/api/runner/register", role="runner", content=body)

    # Then it is refused with 400 and no runner is recorded
    assert_error(answer, 400)


REPORT_BODIES = [
    pytest.param("heartbeat", b'{"progress_current": ', id="heartbeat-truncated-json"),
    pytest.param("heartbeat", b"[]", id="heartbeat-array"),
    pytest.param("heartbeat", b'{"progress_current": "5"}', id="heartbeat-current-string"),
    pytest.param("heartbeat", b'{"progress_total": "10"}', id="heartbeat-total-string"),
    pytest.param("heartbeat", b'{"progress_current": -1}', id="heartbeat-current-negative"),
    pytest.param("heartbeat", b'{"progress_current": true}', id="heartbeat-current-bool"),
    pytest.param(
        "heartbeat", f'{{"progress_current": {2**63}}}'.encode(), id="heartbeat-current-2**63"
    ),
    pytest.param("heartbeat", b'{"console_output": 5}', id="heartbeat-console-number"),
    pytest.param("heartbeat", b'{"console_output": ["a"]}', id="heartbeat-console-list"),
    pytest.param("complete", b'{"output_data": {', id="complete-truncated-json"),
    pytest.param("complete", b'[{"output_data": {}}]', id="complete-array"),
    pytest.param("complete", b'{"console_output": "done"}', id="complete-missing-output"),
    pytest.param("complete", b'{"output_data": "done"}', id="complete-output-string"),
    pytest.param("complete", b'{"output_data": [1]}', id="complete-output-list"),
    pytest.param(
        "complete", b'{"output_data": {}, "console_output": 5}', id="complete-console-number"
    ),
    pytest.param("complete", b'{"output_data": {"s": "\xff"}}', id="complete-invalid-utf8"),
    pytest.param("error", b'{"error_message": ', id="error-truncated-json"),
    pytest.param("error", b'["boom"]', id="error-array"),
    pytest.param("error", b'{"console_output": "trace"}', id="error-missing-message"),
    pytest.param("error", b'{"error_message": 5}', id="error-message-number"),
    pytest.param("error", b'{"error_message": null}', id="error-message-null"),
    pytest.param("error", b'{"error_message": {"why": "boom"}}', id="error-message-object"),
]


@pytest.mark.parametrize(("route", "body"), REPORT_BODIES)
def test_malformed_report_is_refused(
    server: ApiServer,
    server_engine: Engine,
    runner_id: str,
    running_job: str,
    route: str,
    body: bytes,
) -> None:
    # Given a job this runner is running
    before = stored_job(server_engine, running_job)

    # When the runner reports on it with a malformed body
    with nothing_changes(server_engine):
        answer = send(
            server,
            "POST",
            f"/api/runner/jobs/{running_job}/{route}",
            role="runner",
            runner_id=runner_id,
            content=body,
        )

    # Then the report is refused with 400 and the job is as it was
    assert_error(answer, 400)
    assert stored_job(server_engine, running_job) == before


@pytest.mark.parametrize(
    ("route", "body"),
    [
        pytest.param("heartbeat", {"console_output": "a\u0000b"}, id="heartbeat-console"),
        pytest.param("error", {"error_message": "a\u0000b"}, id="error-message"),
    ],
)
def test_nul_character_in_a_report_is_refused(
    server: ApiServer,
    server_engine: Engine,
    runner_id: str,
    running_job: str,
    route: str,
    body: dict[str, Any],
) -> None:
    # Given a job this runner is running
    before = stored_job(server_engine, running_job)

    # When it reports text holding a NUL character (valid JSON: "\u0000")
    answer = send(
        server,
        "POST",
        f"/api/runner/jobs/{running_job}/{route}",
        role="runner",
        runner_id=runner_id,
        json_body=body,
    )

    # Then it is refused with 400 naming the NUL, and the job is as it was
    assert_error(answer, 400)
    assert "NUL" in answer.json()["error"]
    assert stored_job(server_engine, running_job) == before


def test_nul_character_in_a_runner_name_is_refused(
    server: ApiServer, server_engine: Engine
) -> None:
    # Given a runner name holding a NUL character (valid JSON: "\u0000")
    body = {"name": "a\u0000b", "capabilities": [JOB_TYPE]}
    before = database_state(server_engine)

    # When a runner registers with it
    answer = send(server, "POST", "/api/runner/register", role="runner", json_body=body)

    # Then it is refused with 400, recording nothing
    assert_error(answer, 400)
    assert database_state(server_engine) == before


# --- size limits (413) --------------------------------------------------------------------


@pytest.mark.parametrize("route", ["submit", "check"])
def test_input_params_over_its_limit_is_refused(
    limited: ApiServer, server_engine: Engine, route: str
) -> None:
    # Given input_params over its limit in a body under the raw cap
    body = job_body(input_params=unique_params(pad="x" * (MAX_INPUT_BYTES + 100)))
    assert len(body) < RAW_CAPS[route]

    # When it is submitted or checked
    with nothing_changes(server_engine):
        answer = send(limited, "POST", f"/api/jobs/{route}", content=body)

    # Then the field check refuses it with 413
    message = assert_error(answer, 413)
    assert "input_params" in message and str(MAX_INPUT_BYTES) in message


def test_input_params_at_its_limit_is_accepted(limited: ApiServer) -> None:
    # Given input_params encoding to exactly its limit
    params = unique_params(pad="")
    params["pad"] = "x" * (MAX_INPUT_BYTES - len(orjson.dumps(params)))
    assert len(orjson.dumps(params)) == MAX_INPUT_BYTES

    # When it is submitted
    answer = submit(limited, JOB_TYPE, params)

    # Then the job is created
    assert answer.status_code == 201, answer.text


def chunked(body: bytes) -> Iterator[bytes]:
    """``body`` in 4 KB pieces, so it goes out without a Content-Length."""
    for start in range(0, len(body), 4096):
        yield body[start : start + 4096]


FAR_OVER = {
    "submit": lambda: job_body(input_params=unique_params(pad="x" * 50_000)),
    "check": lambda: job_body(input_params=unique_params(pad="x" * 50_000)),
    "heartbeat": lambda: orjson.dumps({"console_output": "x" * 50_000}),
    "complete": lambda: orjson.dumps({"output_data": {"pad": "x" * 50_000}}),
    "error": lambda: orjson.dumps({"error_message": "x" * 50_000}),
    "register": lambda: orjson.dumps({"name": "r", "capabilities": ["x"] * 20_000}),
}


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("route", ["submit", "check"])
def test_job_body_far_over_the_raw_cap_is_refused(
    limited: ApiServer, server_engine: Engine, route: str, framing: str
) -> None:
    # Given a body far over the route's raw cap
    body = FAR_OVER[route]()
    content = body if framing == "content-length" else chunked(body)

    # When it is sent, with or without a Content-Length
    with nothing_changes(server_engine):
        answer = send(limited, "POST", f"/api/jobs/{route}", content=content)

    # Then the raw cap refuses it with 413 before anything parses it
    message = assert_error(answer, 413)
    assert f"request body over the limit of {RAW_CAPS[route]} bytes" in message


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_register_body_far_over_the_raw_cap_is_refused(
    limited: ApiServer, server_engine: Engine, framing: str
) -> None:
    # Given a registration body over the default raw cap
    body = FAR_OVER["register"]()
    assert len(body) > DEFAULT_CAP_BYTES

    # When a runner sends it
    with nothing_changes(server_engine, with_last_seen=True):
        answer = send(
            limited,
            "POST",
            "/api/runner/register",
            role="runner",
            content=body if framing == "content-length" else chunked(body),
        )

    # Then it is refused with 413
    message = assert_error(answer, 413)
    assert f"request body over the limit of {DEFAULT_CAP_BYTES} bytes" in message


OVER_FIELD = [
    pytest.param(
        "heartbeat",
        {"console_output": "x" * (MAX_CONSOLE_BYTES + 1)},
        "console_output",
        id="heartbeat-console",
    ),
    pytest.param(
        "heartbeat",
        {"console_output": "\u00e9" * (MAX_CONSOLE_BYTES // 2 + 1)},
        "console_output",
        id="heartbeat-console-counted-in-utf8-bytes",
    ),
    pytest.param(
        "complete",
        {"output_data": {"pad": "x" * MAX_OUTPUT_BYTES}},
        "output_data",
        id="complete-output",
    ),
    pytest.param(
        "complete",
        {"output_data": {}, "console_output": "x" * (MAX_CONSOLE_BYTES + 1)},
        "console_output",
        id="complete-console",
    ),
    pytest.param(
        "error", {"error_message": "x" * (MAX_ERROR_BYTES + 1)}, "error_message", id="error-message"
    ),
    pytest.param(
        "error",
        {"error_message": "boom", "console_output": "x" * (MAX_CONSOLE_BYTES + 1)},
        "console_output",
        id="error-console",
    ),
]


@pytest.mark.parametrize(("route", "body", "field"), OVER_FIELD)
def test_report_with_a_field_over_its_limit_changes_nothing(
    limited: ApiServer,
    server_engine: Engine,
    runner_id: str,
    running_job: str,
    route: str,
    body: dict[str, Any],
    field: str,
) -> None:
    # Given a job this runner claimed and is running, with a stored console log
    encoded = orjson.dumps(body)
    assert len(encoded) < RAW_CAPS[route]
    before = stored_job(server_engine, running_job)

    # When it reports a field over its limit in a body under the raw cap
    with nothing_changes(server_engine):
        answer = send(
            limited,
            "POST",
            f"/api/runner/jobs/{running_job}/{route}",
            role="runner",
            runner_id=runner_id,
            content=encoded,
        )

    # Then the field check refuses it with 413 and the stored job did not change
    message = assert_error(answer, 413)
    assert message.startswith(field)
    after = stored_job(server_engine, running_job)
    assert after == before
    assert (
        after["status"],
        after["console_output"],
        after["output_data"],
        after["error_message"],
    ) == ("in_progress", "before", None, None)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("route", ["heartbeat", "complete", "error"])
def test_report_far_over_the_raw_cap_changes_nothing(
    limited: ApiServer,
    server_engine: Engine,
    runner_id: str,
    running_job: str,
    route: str,
    framing: str,
) -> None:
    # Given a job this runner claimed and is running
    body = FAR_OVER[route]()
    before = stored_job(server_engine, running_job)

    # When it reports with a body far over the route's raw cap
    with nothing_changes(server_engine):
        answer = send(
            limited,
            "POST",
            f"/api/runner/jobs/{running_job}/{route}",
            role="runner",
            runner_id=runner_id,
            content=body if framing == "content-length" else chunked(body),
        )

    # Then the raw cap refuses it with 413 and the stored job did not change
    message = assert_error(answer, 413)
    assert f"request body over the limit of {RAW_CAPS[route]} bytes" in message
    after = stored_job(server_engine, running_job)
    assert after == before
    assert (
        after["status"],
        after["console_output"],
        after["output_data"],
        after["error_message"],
    ) == ("in_progress", "before", None, None)


def test_console_output_at_its_limit_is_accepted(
    limited: ApiServer, server_engine: Engine, runner_id: str, running_job: str
) -> None:
    # Given a job this runner is running
    # When it reports a console log of exactly the limit
    answer = send(
        limited,
        "POST",
        f"/api/runner/jobs/{running_job}/heartbeat",
        role="runner",
        runner_id=runner_id,
        json_body={"console_output": "x" * MAX_CONSOLE_BYTES},
    )

    # Then it is stored whole
    assert answer.status_code == 200, answer.text
    assert stored_job(server_engine, running_job)["console_output"] == "x" * MAX_CONSOLE_BYTES


# --- keys (401) ---------------------------------------------------------------------------


AuthHeader = Callable[[Keys], str | None]
BAD_SUBMIT_AUTH: list[Any] = [
    pytest.param(lambda keys: None, id="missing"),
    pytest.param(lambda keys: "Basic x", id="basic-scheme"),
    pytest.param(lambda keys: f"Basic {keys.submit}", id="basic-with-right-key"),
    pytest.param(lambda keys: "Bearer", id="bearer-without-token"),
    pytest.param(lambda keys: keys.submit, id="key-without-scheme"),
    pytest.param(lambda keys: "Bearer wrong-key", id="wrong-key"),
    pytest.param(lambda keys: f"Bearer {keys.submit}x", id="right-key-plus-one"),
    pytest.param(lambda keys: f"Bearer {keys.submit[:-1]}", id="right-key-minus-one"),
    pytest.param(lambda keys: f"Bearer {keys.runner}", id="runner-key"),
    pytest.param(lambda keys: f"Bearer {keys.admin}", id="admin-key"),
]


def send_with_auth(
    server: ApiServer, method: str, path: str, authorization: str | None, **kwargs: Any
) -> httpx.Response:
    """One request with exactly this Authorization header (none when ``None``)."""
    headers = kwargs.pop("headers", {})
    if authorization is not None:
        headers["Authorization"] = authorization
    with server.client() as client:
        return client.request(method, path, headers=headers, **kwargs)


@pytest.mark.parametrize("auth", BAD_SUBMIT_AUTH)
def test_submit_without_a_valid_submit_key_is_refused(
    server: ApiServer, server_engine: Engine, auth: AuthHeader
) -> None:
    # Given a valid new job and a missing, malformed, wrong or other-role key
    # When it is submitted
    with nothing_changes(server_engine):
        answer = send_with_auth(
            server,
            "POST",
            "/api/jobs/submit",
            auth(server.keys),
            json={"job_type": JOB_TYPE, "input_params": unique_params()},
        )

    # Then it is refused with 401 and no job is created
    assert_error(answer, 401)


@pytest.mark.parametrize("role", ["submit", "admin"])
@pytest.mark.parametrize("action", ["claim", "register"])
def test_runner_routes_refuse_other_keys(
    server: ApiServer,
    server_engine: Engine,
    runner_id: str,
    pending_job: str,
    action: str,
    role: str,
) -> None:
    # Given a pending job and a registered runner, and the key of another role
    path = f"/api/runner/jobs/{pending_job}/claim" if action == "claim" else "/api/runner/register"

    # When that key is used to claim the job or register a runner
    with nothing_changes(server_engine, with_last_seen=True):
        answer = send(
            server,
            "POST",
            path,
            role=role,
            runner_id=runner_id,
            json_body={"name": "intruder", "capabilities": [JOB_TYPE]},
        )

    # Then it is refused with 401: nothing is claimed, registered or even marked seen
    assert_error(answer, 401)


@pytest.mark.parametrize("role", ["runner", "submit"])
@pytest.mark.parametrize("batch", [False, True], ids=["delete", "batch-delete"])
def test_delete_refuses_keys_other_than_admin(
    server: ApiServer, server_engine: Engine, pending_job: str, batch: bool, role: str
) -> None:
    # Given a job
    # When a runner or submit key tries to delete it
    with nothing_changes(server_engine):
        if batch:
            answer = send(
                server,
                "POST",
                "/api/admin/jobs/batch-delete",
                role=role,
                json_body={"job_ids": [pending_job]},
            )
        else:
            answer = send(server, "DELETE", f"/api/admin/jobs/{pending_job}", role=role)

    # Then it is refused with 401 and the job is still there
    assert_error(answer, 401)


# --- unknown things (404) -----------------------------------------------------------------


UNKNOWN = "00000000-0000-0000-0000-000000000000"


@pytest.mark.parametrize(
    ("role", "method", "path"),
    [
        ("submit", "GET", f"/api/jobs/{UNKNOWN}"),
        ("submit", "GET", "/api/jobs/" + "x" * 300),
        ("admin", "GET", f"/api/admin/jobs/{UNKNOWN}"),
        ("admin", "DELETE", f"/api/admin/jobs/{UNKNOWN}"),
        ("admin", "GET", f"/api/admin/runners/{UNKNOWN}"),
        ("runner", "GET", f"/api/admin/runners/{UNKNOWN}"),
        ("admin", "GET", "/api/no-such-route"),
    ],
)
def test_unknown_resource_is_404(
    server: ApiServer, server_engine: Engine, role: str, method: str, path: str
) -> None:
    # Given no job or runner with this id
    # When it is asked for or deleted
    with nothing_changes(server_engine, with_last_seen=True):
        answer = send(server, method, path, role=role)

    # Then the answer is 404
    assert_error(answer, 404)


@pytest.mark.parametrize("path", ["/api/runner/verify", "claim"])
def test_unknown_runner_is_404(
    server: ApiServer, server_engine: Engine, pending_job: str, path: str
) -> None:
    # Given a runner id the server never handed out, and a pending job
    if path == "claim":
        path = f"/api/runner/jobs/{pending_job}/claim"

    # When it verifies itself or claims the job
    with nothing_changes(server_engine, with_last_seen=True):
        answer = send(
            server,
            "GET" if path.endswith("verify") else "POST",
            path,
            role="runner",
            runner_id=UNKNOWN,
        )

    # Then the answer is 404 and the job stays pending
    assert_error(answer, 404)


# --- runner identity (400) ----------------------------------------------------------------


RUNNER_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/runner/verify", None),
    ("GET", "/api/runner/jobs/available?types[]=bad_input", None),
    ("POST", "/api/runner/jobs/{job}/claim", None),
    ("POST", "/api/runner/jobs/{job}/heartbeat", {"progress_current": 2}),
    ("POST", "/api/runner/jobs/{job}/complete", {"output_data": {}}),
    ("POST", "/api/runner/jobs/{job}/error", {"error_message": "boom"}),
    ("POST", "/api/runner/jobs/{job}/release", None),
]


@pytest.mark.parametrize(
    "runner_header", [None, "", "r" * 65], ids=["missing", "empty", "65-chars"]
)
@pytest.mark.parametrize(("method", "path", "body"), RUNNER_ROUTES)
def test_runner_route_without_a_usable_runner_id_is_400(
    server: ApiServer,
    server_engine: Engine,
    claimed_job: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    runner_header: str | None,
) -> None:
    # Given a claimed job and a request with no usable X-Runner-ID
    headers = {} if runner_header is None else {"X-Runner-ID": runner_header}

    # When a runner route is called
    with nothing_changes(server_engine, with_last_seen=True):
        answer = send(
            server,
            method,
            path.format(job=claimed_job),
            role="runner",
            json_body=body,
            headers=headers,
        )

    # Then the answer is 400 and nothing changed
    assert_error(answer, 400)


# --- query parameters (400) ---------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        {"status": "bogus"},
        {"status": "PENDING"},
        {"limit": "0"},
        {"limit": "abc"},
        {"limit": "501"},
        {"limit": "1.5"},
        {"offset": "-1"},
        {"offset": "abc"},
        {"job_type": "bad input"},
        {"before": "abc"},
        {"before": "12"},
        {"before": ":job"},
        {"before": "99999999999999999:job"},
    ],
    ids=lambda query: "&".join(f"{k}={v}" for k, v in query.items()),
)
def test_bad_admin_list_query_is_400(
    server: ApiServer, server_engine: Engine, query: dict[str, str]
) -> None:
    # Given a query parameter of the wrong type or out of range
    # When the admin lists jobs with it
    with nothing_changes(server_engine):
        answer = send(server, "GET", "/api/admin/jobs", role="admin", params=query)

    # Then the answer is 400
    assert_error(answer, 400)


@pytest.mark.parametrize(
    "query",
    [
        {"types[]": "bad input"},
        {"types": "a/b"},
        {"wait": "-1"},
        {"wait": "31"},
        {"wait": "soon"},
    ],
    ids=lambda query: "&".join(f"{k}={v}" for k, v in query.items()),
)
def test_bad_available_query_is_400(
    server: ApiServer, server_engine: Engine, runner_id: str, query: dict[str, str]
) -> None:
    # Given a bad job type or wait
    # When a runner asks for available jobs with it
    with nothing_changes(server_engine):
        answer = send(
            server,
            "GET",
            "/api/runner/jobs/available",
            role="runner",
            runner_id=runner_id,
            params=query,
        )

    # Then the answer is 400
    assert_error(answer, 400)


# --- conflicts (409) ----------------------------------------------------------------------


def assert_conflict(answer: httpx.Response) -> None:
    """409 with the seed's outcome body, carrying the one error key too."""
    assert answer.status_code == 409, answer.text
    body = answer.json()
    assert set(body) == {"success", "message", "error"} and body["success"] is False
    assert isinstance(body["message"], str) and body["message"]
    assert body["error"] == body["message"]


@pytest.mark.parametrize("state", ["claimed-by-other", "claimed-by-self", "completed", "unknown"])
def test_claim_of_a_job_that_is_not_pending_is_409(
    server: ApiServer,
    server_engine: Engine,
    runner_id: str,
    other_runner_id: str,
    claimed_job: str,
    state: str,
) -> None:
    # Given a job claimed by a runner (or finished, or no job at all)
    job_id = UNKNOWN if state == "unknown" else claimed_job
    if state == "completed":
        done = send(
            server,
            "POST",
            f"/api/runner/jobs/{claimed_job}/complete",
            role="runner",
            runner_id=runner_id,
            json_body={"output_data": {"ok": True}},
        )
        assert done.status_code == 200, done.text
    claimer = other_runner_id if state == "claimed-by-other" else runner_id

    # When a runner tries to claim it
    with nothing_changes(server_engine):
        answer = send(
            server, "POST", f"/api/runner/jobs/{job_id}/claim", role="runner", runner_id=claimer
        )

    # Then the claim is refused with 409 and the job keeps its state and owner
    assert_conflict(answer)
    if state != "unknown":
        assert stored_job(server_engine, claimed_job)["claimed_by"] == runner_id


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("heartbeat", {"progress_current": 2, "console_output": "hijacked"}),
        ("complete", {"output_data": {"hijacked": True}}),
        ("error", {"error_message": "hijacked"}),
        ("release", None),
    ],
)
def test_report_on_another_runners_job_is_409(
    server: ApiServer,
    server_engine: Engine,
    other_runner_id: str,
    running_job: str,
    route: str,
    body: dict[str, Any] | None,
) -> None:
    # Given a job another runner is running
    # When this runner reports on it
    with nothing_changes(server_engine):
        answer = send(
            server,
            "POST",
            f"/api/runner/jobs/{running_job}/{route}",
            role="runner",
            runner_id=other_runner_id,
            json_body=body,
        )

    # Then the report is refused with 409 and the job did not change
    assert_conflict(answer)


@pytest.mark.parametrize("route", ["heartbeat", "complete", "error", "release"])
def test_report_on_a_pending_job_is_409(
    server: ApiServer, server_engine: Engine, runner_id: str, pending_job: str, route: str
) -> None:
    # Given a job nobody claimed
    body = {
        "heartbeat": {},
        "complete": {"output_data": {}},
        "error": {"error_message": "boom"},
        "release": None,
    }[route]

    # When a runner reports on it
    with nothing_changes(server_engine):
        answer = send(
            server,
            "POST",
            f"/api/runner/jobs/{pending_job}/{route}",
            role="runner",
            runner_id=runner_id,
            json_body=body,
        )

    # Then the report is refused with 409
    assert_conflict(answer)


# --- afterwards ---------------------------------------------------------------------------


def test_servers_survive_all_of_the_above(server: ApiServer, limited: ApiServer) -> None:
    # Given both servers took every bad request above
    for srv in (server, limited):
        # When they are asked for their health
        with srv.client() as anyone:
            health = anyone.get("/health")

        # Then they are alive and well
        assert health.status_code == 200, health.text
        assert health.json()["status"] == "ok"
