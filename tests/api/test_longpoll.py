"""Long polling for available jobs: answers as soon as a job of the asked types is pending."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from sqlalchemy import Engine

from runpack_tasks.jobstore.models import RUNNERS
from tests.support import ApiServer, register, submit, unique_params, wait_for

LONG_WAIT_S = 20


def test_long_poll_returns_when_a_job_arrives(server: ApiServer, server_engine: Engine) -> None:
    # Given a runner long-polling for a type nobody has submitted yet (its last_seen set
    # back, so the server's note that it was seen tells when the poll has begun)
    job_type = f"lp{unique_params()['test_id'][:8]}"
    runner_id = register(server, [job_type])
    with server_engine.begin() as conn:
        conn.execute(
            sa.update(RUNNERS)
            .where(RUNNERS.c.id == runner_id)
            .values(last_seen=RUNNERS.c.last_seen - 60_000)
        )

    def poll() -> tuple[float, list[str]]:
        started = time.monotonic()
        with server.client("runner", runner_id) as client:
            answer = client.get(
                "/api/runner/jobs/available", params={"types[]": job_type, "wait": LONG_WAIT_S}
            )
        return time.monotonic() - started, [job["job_id"] for job in answer.json()["jobs"]]

    with ThreadPoolExecutor(1) as pool:
        polling = pool.submit(poll)
        wait_for(lambda: server_saw_runner_poll(server, runner_id), what="the poll to start")
        # When a job of that type is submitted
        job_id = submit(server, job_type, {}).json()["job_id"]
        # Then the poll answers with it, long before its wait ran out
        elapsed_s, jobs = polling.result(timeout=LONG_WAIT_S + 10)
    assert jobs == [job_id]
    assert elapsed_s < LONG_WAIT_S / 2


def server_saw_runner_poll(server: ApiServer, runner_id: str) -> bool:
    with server.client("admin") as admin:
        runner = admin.get(f"/api/admin/runners/{runner_id}").json()
    return bool(runner["last_seen"] >= runner["registered_at"])


def test_long_poll_with_nothing_pending_returns_empty_after_the_wait(
    server: ApiServer,
) -> None:
    runner_id = register(server, ["nothing-here"])
    started = time.monotonic()
    with server.client("runner", runner_id) as client:
        answer = client.get(
            "/api/runner/jobs/available", params={"types": "nothing-here", "wait": 1}
        )
    assert answer.json() == {"jobs": []}
    assert time.monotonic() - started >= 1


def test_wait_over_30_seconds_is_refused(server: ApiServer) -> None:
    runner_id = register(server, ["x"])
    with server.client("runner", runner_id) as client:
        answer = client.get("/api/runner/jobs/available", params={"types": "x", "wait": 31})
    assert answer.status_code == 400 and "wait" in answer.json()["error"]
