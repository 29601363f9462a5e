"""Races with real concurrency against the API: one job per hash, one winner per claim."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import httpx
import sqlalchemy as sa
from sqlalchemy import Engine

from runpack_tasks.jobstore.hashing import job_hash
from runpack_tasks.jobstore.models import JOBS
from tests.support import ApiServer, register, stored_job, submit, unique_params

SUBMITTERS = 200
CLAIMERS = 32


def test_200_identical_concurrent_submissions_create_one_job(
    server: ApiServer, server_engine: Engine
) -> None:
    # Given 200 clients ready to submit the same new job at the same moment
    params = unique_params()
    start = Barrier(SUBMITTERS)
    limits = httpx.Limits(max_connections=SUBMITTERS)

    def one_submission(client: httpx.Client) -> httpx.Response:
        start.wait()
        return client.post("/api/jobs/submit", json={"job_type": "race", "input_params": params})

    # (one request first, so the rate limiter holds a lease: a burst of requests that find
    # none each take one, see test_ratelimit.py)
    with server.client("submit", limits=limits) as client, ThreadPoolExecutor(SUBMITTERS) as pool:
        warm_up = {"job_type": "race", "input_params": unique_params()}
        assert client.post("/api/jobs/check", json=warm_up).status_code == 200
        # When they all submit
        answers = list(pool.map(one_submission, [client] * SUBMITTERS))

    # Then exactly one got 201, all got the same job, and the table holds one row
    codes = sorted(answer.status_code for answer in answers)
    assert codes.count(201) == 1, codes
    assert set(codes) == {200, 201}
    assert len({answer.json()["job_id"] for answer in answers}) == 1
    with server_engine.connect() as conn:
        rows = conn.execute(
            sa.select(sa.func.count())
            .select_from(JOBS)
            .where(JOBS.c.job_hash == job_hash("race", params))
        ).scalar_one()
    assert rows == 1


def test_32_runners_claiming_one_job_exactly_one_wins(
    server: ApiServer, server_engine: Engine
) -> None:
    # Given a pending job and 32 registered runners
    job_id = submit(server, "race", unique_params()).json()["job_id"]
    runner_ids = [register(server, ["race"], name=f"r{n}") for n in range(CLAIMERS)]
    start = Barrier(CLAIMERS)

    def one_claim(runner_id: str) -> tuple[str, httpx.Response]:
        with server.client("runner", runner_id) as client:
            start.wait()
            return runner_id, client.post(f"/api/runner/jobs/{job_id}/claim")

    # When they all claim it at once
    with ThreadPoolExecutor(CLAIMERS) as pool:
        answers = list(pool.map(one_claim, runner_ids))

    # Then exactly one claim succeeded, the others got 409, and the winner holds the job
    winners = [rid for rid, answer in answers if answer.status_code == 200]
    assert len(winners) == 1
    assert sorted(a.status_code for _, a in answers) == [200] + [409] * (CLAIMERS - 1)
    assert all(a.json()["success"] is False for _, a in answers if a.status_code == 409)
    stored = stored_job(server_engine, job_id)
    assert stored["claimed_by"] == winners[0]
    assert stored["attempts"] == 1


def test_reports_by_a_non_claimer_get_409_and_change_nothing(
    server: ApiServer, server_engine: Engine
) -> None:
    # Given a job claimed by one runner, in progress
    job_id = submit(server, "race", unique_params()).json()["job_id"]
    owner, intruder = register(server, ["race"]), register(server, ["race"])
    with server.client("runner", owner) as client:
        client.post(f"/api/runner/jobs/{job_id}/claim")
        client.post(
            f"/api/runner/jobs/{job_id}/heartbeat",
            json={"progress_current": 1, "progress_total": 4, "console_output": "mine"},
        )
    before = stored_job(server_engine, job_id)

    # When another runner heartbeats, completes, fails and releases it
    with server.client("runner", intruder) as client:
        answers = [
            client.post(
                f"/api/runner/jobs/{job_id}/heartbeat",
                json={"progress_current": 3, "console_output": "theirs"},
            ),
            client.post(
                f"/api/runner/jobs/{job_id}/complete",
                json={"output_data": {"stolen": True}, "console_output": "theirs"},
            ),
            client.post(f"/api/runner/jobs/{job_id}/error", json={"error_message": "x"}),
            client.post(f"/api/runner/jobs/{job_id}/release"),
        ]

    # Then each is refused with 409 and the job is exactly as it was
    assert [answer.status_code for answer in answers] == [409] * 4
    assert all(answer.json()["success"] is False for answer in answers)
    assert stored_job(server_engine, job_id) == before
