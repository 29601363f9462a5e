"""No path or query parameter a client sends reaches a 500: a property test over the
OpenAPI schema's operations, in process, on both backends.

Each operation that declares parameters gets values of every kind (huge and negative
integers, non-finite numbers, text with NUL, slashes and long runs, repeated array
members), sent with the key and runner id its route wants, so the request reaches the
parameter checks. Every answer must be below 500, and an error must be the one body.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import ApiServer

#: Values at the edges of every type's range, each sent to every parameter in turn.
EDGES = [
    *(str(n) for n in (2**31, 2**53, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, -1, 0)),
    *("nan", "inf", "-inf", "1e400", "-0", "1.5", "", " ", "\x00", "a/b", "%", "null", "[]"),
    "x" * 400,
]
#: Anything a client can put in one parameter.
ANY_VALUE = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(min_size=0, max_size=40),
    st.text(alphabet="\x00/%?#\\ ab", min_size=1, max_size=10),
    st.text(alphabet="a", min_size=60, max_size=400),
)


def operations(spec: dict[str, Any]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(method, path template, path and query parameters) of every operation with any."""
    found = []
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            params = [p for p in operation.get("parameters", []) if p["in"] in ("path", "query")]
            if params:
                found.append((method.upper(), path, params))
    return found


def role_of(path: str) -> str:
    """The key role a path's routes accept."""
    return (
        "admin" if path.startswith("/api/admin") else "runner" if "/runner/" in path else "submit"
    )


Operation = tuple[str, str, list[dict[str, Any]]]


def send(server: ApiServer, op: Operation, values: dict[str, list[str]], runner: str) -> int:
    """``op`` with these parameter values; asserts no 500 and the one error body."""
    method, template, params = op
    path, query = template, []
    for param in params:
        for value in values.get(param["name"], []):
            if param["in"] == "path":
                path = path.replace("{" + param["name"] + "}", quote(value, safe="") or "x")
            else:
                query.append((param["name"], value))
    path = path.replace("{job_id}", "x").replace("{runner_id}", "x")
    with server.client(role_of(template), runner) as client:
        answer = client.request(method, path, params=query, json={})
    assert answer.status_code < 500, (method, path, query, answer.text)
    if answer.status_code >= 400 and answer.status_code != 405:
        assert isinstance(answer.json().get("error"), str), answer.text
    return answer.status_code


def test_no_parameter_value_reaches_a_500(server: ApiServer) -> None:
    # Given a registered runner, so runner routes get as far as their parameters
    with server.client("runner") as client:
        registered = client.post(
            "/api/runner/register", json={"name": "bounds", "capabilities": ["bounds"]}
        )
        runner = registered.json()["runner_id"]
        ops = operations(client.get("/openapi.json").json())
    assert {path for _, path, _ in ops} >= {"/api/admin/jobs", "/api/runner/jobs/available"}
    answered: set[int] = set()

    # When each parameter of each operation is sent each edge value in turn
    for op in ops:
        for param in op[2]:
            for value in EDGES:
                # Then the answer is never a server error, and an error is the one error body
                answered.add(send(server, op, {param["name"]: [value]}, runner))

    # And when all of an operation's parameters get generated values at once (repeated too)
    @settings(
        max_examples=10 * len(ops),
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(st.sampled_from(ops), st.data())
    def probe(op: Operation, data: st.DataObject) -> None:
        values = {
            param["name"]: [str(data.draw(ANY_VALUE, label=param["name"]))]
            * data.draw(st.integers(1, 2))
            for param in op[2]
        }
        answered.add(send(server, op, values, runner))

    probe()
    assert 400 in answered and 200 in answered  # values on both sides of the bounds
