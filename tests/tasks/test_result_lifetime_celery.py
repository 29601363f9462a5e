"""Result lifetime end to end with a real Celery worker: with RUNPACK_RESULT_TTL_S=3 a
result is served, then expires, and a submit has the worker run the same job again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier
from typing import Any

import httpx
import pytest

from tests.support import Cluster, ServerProcess, cluster_around, wait_for
from tests.tasks.test_celery_execution import executions, tally_log

TTL_S = 3


@pytest.fixture(scope="module")
def live_server_env() -> dict[str, str]:
    """Results live 3 s, on the API and the workers alike."""
    return {"RUNPACK_RESULT_TTL_S": str(TTL_S)}


@pytest.fixture(scope="module")
def cluster(live_server: ServerProcess) -> Iterator[Cluster]:
    """API, beat and one worker for this module."""
    with cluster_around(live_server) as running:
        yield running


def check(cluster: Cluster, params: dict[str, Any]) -> dict[str, Any]:
    with cluster.server.client("submit") as client:
        answer = client.post("/api/jobs/check", json={"job_type": "tally", "input_params": params})
    body: dict[str, Any] = answer.json()
    return body


def expired_after_ttl(cluster: Cluster, job_id: str, params: dict[str, Any]) -> None:
    """Wait until check says the job expired, no sooner than its time to live."""
    finished_at = cluster.job(job_id)["finished_at"]
    wait_for(
        lambda: check(cluster, params)["status"] == "expired",
        timeout_s=TTL_S + 10,
        interval_s=0.2,
        what="the result to expire",
    )
    assert time.time() * 1000 >= finished_at + TTL_S * 1000


def test_an_expired_result_is_run_again_by_a_worker(cluster: Cluster, tmp_path: Path) -> None:
    # Given a tally job a worker completed (recording the plugin's cache_version), served
    log = tally_log(tmp_path)
    params = {"log": str(log)}
    job_id = cluster.submit("tally", params).json()["job_id"]
    job = cluster.wait_for_status(job_id, "completed", "failed")
    assert job["status"] == "completed" and job["cache_version"] == "1", job
    served = cluster.submit("tally", params)
    assert served.status_code == 200 and served.json()["result"]["output_data"] == {"count": 1}

    # When its time to live passes, Then check and status say expired, running nothing
    expired_after_ttl(cluster, job_id, params)
    with cluster.server.client("submit") as client:
        assert client.get(f"/api/jobs/{job_id}").json()["status"] == "expired"
    assert executions(log) == 1

    # And a submit returns the same job, pending, and the worker runs it again
    again = cluster.submit("tally", params)
    assert again.status_code == 200
    assert again.json()["job_id"] == job_id and again.json()["status"] == "pending"
    rerun = cluster.wait_for_status(job_id, "completed", "failed")
    assert rerun["output_data"] == {"count": 2} and executions(log) == 2


def test_fifty_concurrent_submits_of_an_expired_result_run_it_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Given a completed tally job whose result expired
    log = tally_log(tmp_path)
    params = {"log": str(log)}
    job_id = cluster.submit("tally", params).json()["job_id"]
    cluster.wait_for_status(job_id, "completed")
    expired_after_ttl(cluster, job_id, params)

    # When 50 clients submit it at once
    start = Barrier(50)

    def submit_once(_: int) -> dict[str, Any]:
        with cluster.server.client("submit", limits=httpx.Limits(max_connections=1)) as client:
            start.wait()
            answer = client.post(
                "/api/jobs/submit", json={"job_type": "tally", "input_params": params}
            )
            body: dict[str, Any] = answer.json()
            return body

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(submit_once, range(50)))

    # Then they all name the one job, exactly one requeued it, and the worker ran it once
    assert {a["job_id"] for a in answers} == {job_id}
    assert sum(a["message"].endswith("; requeued") for a in answers) == 1
    cluster.wait_for_status(job_id, "completed")
    assert executions(log) == 2
    assert cluster.job(job_id)["attempts"] == 1
