"""The API against its own OpenAPI schema: schemathesis generates requests for every
operation, valid and invalid, with each of the three keys, and runs all of its checks on
every answer (no server error, status codes, content types, headers and bodies as the
schema says, invalid data refused, valid data accepted, authentication not ignored,
a 405 that names the allowed methods).

Two tests: schemathesis's own run (its examples, coverage and fuzzing phases) over the
operations of each key; and its generated cases sent with a registered runner's id, so
runner routes get past the runner lookup to their parameters and bodies.

Examples per operation and mode: ``FUZZ_EXAMPLES`` (default 8; the README says how to run
more).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, engine
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events

from tests.support import (
    ApiServer,
    Backend,
    InProcessServer,
    register,
    serving_in_process,
    wait_for,
)
from tests.support.server import LOOPBACK

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
#: Which key each part of the API takes; the operations fuzzed with that key.
ROLE_PREFIXES = {
    "submit": ("/api/jobs",),
    "runner": ("/api/runner",),
    "admin": ("/api/admin", "/health", "/metrics"),
}
#: The checks' settings both tests share.
#: A request the schema calls invalid may also be refused as too large (413) before its
#: shape is looked at.
CHECKS_CONFIG = {
    "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "404", "409", "413"]},
    "negative_data_rejection": {
        "expected-statuses": [
            *("400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428"),
            "429",
        ]
    },
}


@pytest.fixture(scope="module")
def server(
    backend: Backend, module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessServer]:
    """The app in process, also listening on its loopback port (schemathesis re-sends
    some requests itself), with no long polls: a poll answers at once."""
    tmp_dir = tmp_path_factory.mktemp("fuzz")
    extra = {"RUNPACK_MAX_LONG_POLLS": "0"}
    with serving_in_process(module_database_url, backend, tmp_dir, extra) as srv:
        config = uvicorn.Config(
            srv.app, host=LOOPBACK, port=srv.port, lifespan="off", log_level="error"
        )
        listener = uvicorn.Server(config)
        done = srv.portal.start_task_soon(listener.serve)
        wait_for(lambda: listener.started, timeout_s=10)
        yield srv
        listener.should_exit = True
        done.result(timeout=10)


@pytest.fixture(scope="module")
def api_schema(server: ApiServer) -> Any:
    with server.client() as client:
        spec = client.get("/openapi.json").json()
    return schemathesis.openapi.from_dict(
        spec, config=SchemathesisConfig.from_dict({"checks": CHECKS_CONFIG})
    )


def all_checks() -> list[Any]:
    load_all_checks()
    return list(CHECKS.get_all())


def mangles_query_only(case: Any) -> bool:
    """Whether ``case`` is invalid in its query string alone: a query string is text, so
    a value generated as another type (``false``, ``3``) arrives as valid text, and the
    server rightly takes it. Every query parameter's values are tried by
    test_parameter_bounds instead."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_negative:
        return False
    negative = [location for location, info in meta.components.items() if info.mode.is_negative]
    return bool(negative) and all(location.value == "query" for location in negative)


@pytest.mark.parametrize("role", list(ROLE_PREFIXES))
def test_schema_holds_for_every_generated_request(
    server: ApiServer, api_schema: Any, role: str
) -> None:
    # Given the operations this key opens, a registered runner, and every check
    runner_id = register(server, ["fuzzed"], name="fuzz")
    headers = server.headers(role, runner_id if role == "runner" else None)
    operations = [
        result.ok()
        for result in api_schema.get_all_operations()
        if result.ok().path.startswith(ROLE_PREFIXES[role])
    ]
    assert operations
    checks = all_checks()
    strategies = [
        op.as_strategy(mode, headers=headers)
        for op in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    ]
    failures: list[str] = []

    # When schemathesis sends its generated requests
    @settings(
        max_examples=EXAMPLES * len(strategies),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.one_of(strategies))
    def fuzz(case: Any) -> None:
        if mangles_query_only(case):
            return
        try:
            case.call_and_validate(base_url=server.url, headers=headers, checks=checks)
        except Exception as exc:
            failures.append(str(exc)[:1500])

    fuzz()

    # Then no check failed
    assert not failures, "\n\n".join(failures[:30])


@pytest.mark.parametrize("role", list(ROLE_PREFIXES))
def test_a_schemathesis_run_finds_nothing(server: ApiServer, role: str) -> None:
    # Given a schemathesis run of its examples, coverage and fuzzing phases over the
    # operations this key opens, every check on (runner ids are generated: unknown ones
    # get 404), against the server's loopback port
    with server.client() as client:
        spec = client.get("/openapi.json").json()
    config = SchemathesisConfig.from_dict(
        {
            "base-url": server.url,
            "headers": server.headers(role),
            "generation": {"max-examples": EXAMPLES, "deterministic": True},
            "checks": CHECKS_CONFIG,
            "phases": {"stateful": {"enabled": False}},
        }
    )
    prefixes = "|".join(ROLE_PREFIXES[role])
    schema = schemathesis.openapi.from_dict(spec, config=config).include(
        path_regex=f"^({prefixes})"
    )
    failures, scenarios = [], 0

    # When it runs
    for event in engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            scenarios += 1
            for case_id, checks in event.recorder.checks.items():
                case = event.recorder.cases[case_id].value
                failures += [
                    f"{event.phase} {case.method} {case.path} {check.name}: "
                    f"{check.failure_info.failure.title} {case.query} {str(case.body)[:300]}"
                    for check in checks
                    if check.failure_info is not None
                ]
        elif isinstance(event, events.NonFatalError | events.FatalError):
            failures.append(f"error: {event}")

    # Then every scenario passed every check
    assert scenarios > 0
    assert not failures, "\n".join(failures[:30])
