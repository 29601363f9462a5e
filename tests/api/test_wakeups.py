"""Wake-ups across API processes: a job submitted to one ``runpack api`` wakes a runner
long-polling another at once, through Redis pub/sub or PostgreSQL LISTEN/NOTIFY."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from runpack_tasks.jobstore import lifecycle
from runpack_tasks.jobstore.db import create_db_engine
from runpack_tasks.jobstore.hashing import job_hash
from tests.support import (
    Backend,
    Keys,
    ServerProcess,
    postgres_backend,
    register,
    running_server,
    submit,
    unique_params,
    wait_for,
)

LONG_WAIT_S = 25
#: Far longer than a wake-up takes: only a wake-up can answer the poll in time.
SAFETY_NET_OFF = {"RUNPACK_WAKEUP_POLL_S": "600"}


@pytest.fixture(params=["redis", "postgresql"])
def bus_backend(request: pytest.FixtureRequest) -> Backend:
    """PostgreSQL with Redis (pub/sub), or PostgreSQL alone (LISTEN/NOTIFY)."""
    found = postgres_backend()
    if found is None:
        pytest.skip("RUNPACK_TEST_DATABASE_URL and RUNPACK_TEST_REDIS_URL are not set")
    if request.param == "postgresql":
        return Backend("postgresql-only", found.base_database_url, None)
    return found


@contextmanager
def two_servers(
    backend: Backend, tmp_path: Path, extra: dict[str, str]
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    keys = Keys()
    with ExitStack() as stack:
        url = stack.enter_context(backend.fresh_database(tmp_path))
        first, second = (
            stack.enter_context(running_server(url, backend, tmp_path, extra, keys))
            for _ in range(2)
        )
        yield first, second


def waiting_polls(server: ServerProcess) -> int:
    with server.client() as client:
        text = client.get("/metrics").text
    found = re.search(r"^runpack_long_polls_waiting (\S+)$", text, re.MULTILINE)
    return int(float(found.group(1))) if found else -1


def poll(server: ServerProcess, runner_id: str, job_type: str) -> tuple[float, list[str]]:
    started = time.monotonic()
    with server.client("runner", runner_id) as client:
        answer = client.get(
            "/api/runner/jobs/available", params={"types[]": job_type, "wait": LONG_WAIT_S}
        )
    return time.monotonic() - started, [job["job_id"] for job in answer.json()["jobs"]]


def test_a_job_submitted_to_one_process_wakes_a_runner_polling_another(
    bus_backend: Backend, tmp_path: Path
) -> None:
    with two_servers(bus_backend, tmp_path, SAFETY_NET_OFF) as (polled, submitted_to):
        job_type = f"wake{unique_params()['test_id'][:8]}"
        runner_id = register(polled, [job_type])
        with ThreadPoolExecutor(1) as pool:
            # Given a runner long-polling process A, with nothing pending
            polling = pool.submit(poll, polled, runner_id, job_type)
            wait_for(lambda: waiting_polls(polled) == 1, what="the poll to wait")
            # When a job is submitted to process B
            submitted_at = time.monotonic()
            job_id = submit(submitted_to, job_type, {}).json()["job_id"]
            # Then A's poll answers with it at once (its safety-net poll is 10 minutes away)
            elapsed_s, jobs = polling.result(timeout=LONG_WAIT_S + 10)
        assert jobs == [job_id]
        assert time.monotonic() - submitted_at < 3, elapsed_s


def test_the_safety_net_finds_a_job_made_pending_without_a_wake_up(tmp_path: Path) -> None:
    found = postgres_backend()
    if found is None:
        pytest.skip("RUNPACK_TEST_DATABASE_URL and RUNPACK_TEST_REDIS_URL are not set")
    with (
        found.fresh_database(tmp_path) as url,
        running_server(url, found, tmp_path, {"RUNPACK_WAKEUP_POLL_S": "0.5"}) as polled,
    ):
        job_type = f"net{unique_params()['test_id'][:8]}"
        runner_id = register(polled, [job_type])
        with ThreadPoolExecutor(1) as pool:
            polling = pool.submit(poll, polled, runner_id, job_type)
            wait_for(lambda: waiting_polls(polled) == 1, what="the poll to wait")
            # a job written straight to the table: no API process announced it
            engine = create_db_engine(url, pool_size=1)
            try:
                job = lifecycle.submit(engine, job_type, {}, job_hash(job_type, {})).job
            finally:
                engine.dispose()
            elapsed_s, jobs = polling.result(timeout=LONG_WAIT_S + 10)
        assert jobs == [job.id]
        assert elapsed_s < LONG_WAIT_S / 2
