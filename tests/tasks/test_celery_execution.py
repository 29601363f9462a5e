"""Jobs run by real Celery worker processes, on Redis and the embedded broker."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier

import httpx
import pytest
import redis

from tests.support import (
    TEST_REDIS_URL,
    Backend,
    Cluster,
    ServerProcess,
    cluster_around,
    private_redis,
    wait_for,
)


@pytest.fixture(scope="module")
def live_server_env(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The module's broker is its own: beside PostgreSQL a private redis-server (one test
    flushes it), on the embedded default the cluster's filesystem folder."""
    if backend.redis_url is None:
        yield {}
        return
    with private_redis(tmp_path_factory.mktemp("redis")) as url:
        yield {"RUNPACK_BROKER_URL": url}


@pytest.fixture(scope="module")
def cluster(live_server: ServerProcess) -> Iterator[Cluster]:
    """API, beat and one worker (concurrency 2) for this module."""
    with cluster_around(live_server) as running:
        yield running


def tally_log(tmp_path: Path) -> Path:
    return tmp_path / f"tally-{uuid.uuid4().hex[:8]}.log"


def executions(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_hello_world_completes_and_its_result_is_served_from_cache(cluster: Cluster) -> None:
    # Given a hello_world job submitted to the API
    params = {"name": f"Ada {uuid.uuid4().hex[:6]}", "processing_time": 1}
    created = cluster.submit("hello_world", params)
    assert created.status_code == 201
    job_id = created.json()["job_id"]

    # When a worker runs it
    job = cluster.wait_for_status(job_id, "completed", "failed")

    # Then it completed with the seed's greeting, its progress and log recorded
    assert job["status"] == "completed", job
    assert job["output_data"]["greeting"] == f"Hello, {params['name']}!"
    assert job["progress"] == {"current": 10, "total": 10}
    assert job["console_output"].endswith(f"Hello, {params['name']}!")
    assert job["attempts"] == 1 and job["claimed_by"].startswith("runpack-")

    # And resubmitting answers 200 with the cached result without running it again
    again = cluster.submit("hello_world", params)
    assert again.status_code == 200
    assert again.json()["result"]["output_data"] == job["output_data"]
    assert cluster.job(job_id)["attempts"] == 1


def test_a_cached_result_is_never_recomputed(cluster: Cluster, tmp_path: Path) -> None:
    log = tally_log(tmp_path)
    job_id = cluster.submit("tally", {"log": str(log)}).json()["job_id"]
    cluster.wait_for_status(job_id, "completed")
    answers = [cluster.submit("tally", {"log": str(log)}) for _ in range(5)]
    assert {a.status_code for a in answers} == {200}
    assert {a.json()["result"]["output_data"]["count"] for a in answers} == {1}
    assert executions(log) == 1


def test_a_batch_is_published_and_run_once_per_job(cluster: Cluster, tmp_path: Path) -> None:
    # Given a batch of 20 tally jobs, each logging to its own file, one of them twice
    logs = [tally_log(tmp_path) for _ in range(20)]
    jobs = [{"job_type": "tally", "input_params": {"log": str(log)}} for log in logs]
    with cluster.server.client("submit") as client:
        answer = client.post("/api/jobs/submit-batch", json={"jobs": [*jobs, jobs[3]]})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["created"] for r in results] == [True] * 20 + [False]
    # Then the worker runs every one of them, once
    for result in results[:20]:
        cluster.wait_for_status(result["job_id"], "completed")
    assert [executions(log) for log in logs] == [1] * 20


def test_a_failing_job_fails_with_its_message_and_resubmission_runs_it_again(
    cluster: Cluster,
    tmp_path: Path,
) -> None:
    # Given hello_world asked to raise
    params = {"name": uuid.uuid4().hex, "processing_time": 0.5, "test_exception": True}
    job_id = cluster.submit("hello_world", params).json()["job_id"]
    job = cluster.wait_for_status(job_id, "completed", "failed")
    assert job["status"] == "failed"
    assert job["error_message"] == "RuntimeError: Test exception requested"
    assert "Step 5/10" in job["console_output"]

    # When a failing tally job is resubmitted, it runs once more
    log = tally_log(tmp_path)
    tally_id = cluster.submit("tally", {"log": str(log), "fail": True}).json()["job_id"]
    cluster.wait_for_status(tally_id, "failed")
    requeued = cluster.submit("tally", {"log": str(log), "fail": True})
    assert requeued.status_code == 200 and requeued.json()["status"] == "pending"
    wait_for(lambda: executions(log) == 2, what="the second execution")
    assert cluster.wait_for_status(tally_id, "failed")["error_message"] == (
        "RuntimeError: tally asked to fail"
    )


def test_500_concurrent_identical_submissions_run_once(cluster: Cluster, tmp_path: Path) -> None:
    log = tally_log(tmp_path)
    start = Barrier(50)

    def submit_ten(_: int) -> list[httpx.Response]:
        with cluster.server.client("submit", limits=httpx.Limits(max_connections=1)) as client:
            start.wait()
            return [
                client.post(
                    "/api/jobs/submit",
                    json={"job_type": "tally", "input_params": {"log": str(log)}},
                )
                for _ in range(10)
            ]

    with ThreadPoolExecutor(50) as pool:
        answers = [a for batch in pool.map(submit_ten, range(50)) for a in batch]
    assert len(answers) == 500
    assert [a.status_code for a in answers].count(201) == 1
    job_ids = {a.json()["job_id"] for a in answers}
    assert len(job_ids) == 1
    cluster.wait_for_status(job_ids.pop(), "completed")
    assert executions(log) == 1


def test_workers_are_listed_as_runners(cluster: Cluster) -> None:
    workers = cluster.celery_runners()
    assert any(
        w["is_active"] and set(w["capabilities"]) == {"hello_world", "noop", "tally"}
        for w in workers
    )


def test_a_type_only_http_runners_serve_is_never_published(cluster: Cluster) -> None:
    job_id = cluster.submit("http_only_type", {"n": uuid.uuid4().hex}).json()["job_id"]
    # Given beat ran a few rounds since (its interval is 1 s)
    observed = cluster.submit("noop", {"n": uuid.uuid4().hex}).json()["job_id"]
    cluster.wait_for_status(observed, "completed")
    job = cluster.job(job_id)
    assert job["status"] == "pending" and job["attempts"] == 0
    # and its message was never sent: no worker serves the type, so nothing published it
    assert job["published_at"] is None


def workers(cluster: Cluster) -> list[subprocess.Popen[bytes]]:
    """The cluster's live worker processes (the first process is beat)."""
    return [p for p in cluster.processes[1:] if p.poll() is None]


def test_a_killed_worker_does_not_lose_its_job(cluster: Cluster) -> None:
    # Given a worker running a hello_world job
    params = {"name": uuid.uuid4().hex, "processing_time": 3}
    job_id = cluster.submit("hello_world", params).json()["job_id"]
    cluster.wait_for_status(job_id, "in_progress")

    # When every worker is killed with SIGKILL, and a new one starts
    for process in workers(cluster):
        cluster.kill(process)
    cluster.start_worker()

    # Then the job is reaped, republished and completed, its attempts recorded
    job = cluster.wait_for_status(job_id, "completed", "failed", timeout_s=90)
    assert job["status"] == "completed", job
    assert job["attempts"] == 2
    assert job["output_data"]["greeting"] == f"Hello, {params['name']}!"


def test_a_threads_pool_shares_its_claims_and_completions_and_runs_each_job_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Given one worker with a pool of 8 threads (which group their claims and completions)
    for process in workers(cluster):
        cluster.kill(process)
    threaded = cluster.start_worker(types="tally", concurrency=8, pool="threads")

    # When 40 jobs arrive at once
    logs = [tally_log(tmp_path) for _ in range(40)]
    jobs = [{"job_type": "tally", "input_params": {"log": str(log)}} for log in logs]
    with cluster.server.client("submit") as client:
        answer = client.post("/api/jobs/submit-batch", json={"jobs": jobs})
    assert answer.status_code == 200, answer.text

    # Then every one completes with its own result, run once, claimed by that worker
    done = [cluster.wait_for_status(r["job_id"], "completed") for r in answer.json()["results"]]
    assert [job["output_data"] for job in done] == [{"count": 1}] * 40
    assert [executions(log) for log in logs] == [1] * 40
    assert {job["attempts"] for job in done} == {1}
    assert len({job["claimed_by"] for job in done}) == 1
    cluster.kill(threaded)
    cluster.start_worker()  # the module's other tests run on the usual worker


def test_a_flushed_broker_loses_no_job(cluster: Cluster) -> None:
    # Given a worker that crashed (so it still counts as live and messages are sent)
    for process in workers(cluster):
        cluster.kill(process)
    # And 20 jobs submitted and published, none run
    ids = [cluster.submit("noop", {"n": uuid.uuid4().hex}).json()["job_id"] for _ in range(20)]
    wait_for(lambda: all(cluster.job(i)["published_at"] for i in ids), what="publication")

    # When the module's own broker loses every message
    if cluster.broker_url.startswith("redis://"):
        assert cluster.broker_url != TEST_REDIS_URL  # never the shared Redis
        with redis.Redis.from_url(cluster.broker_url) as broker:
            assert broker.dbsize() > 0
            broker.flushall()
    else:
        queue = Path(cluster.broker_url.removeprefix("filesystem://")) / "queue"
        assert any(queue.iterdir())
        shutil.rmtree(queue)
        queue.mkdir()

    # Then a worker started afterwards still completes all 20
    cluster.start_worker()
    for job_id in ids:
        assert cluster.wait_for_status(job_id, "completed", timeout_s=90)["status"] == "completed"


def test_cancel_terminates_a_running_task_and_its_job_stays_cancelled(cluster: Cluster) -> None:
    # Given a worker in the middle of a 6 s hello_world
    params = {"name": f"Cancel {uuid.uuid4().hex[:6]}", "processing_time": 6}
    job_id = cluster.submit("hello_world", params).json()["job_id"]
    running = cluster.wait_for_status(job_id, "in_progress")
    node = running["claimed_by"]
    worker = next(
        p for p in workers(cluster) if f"registered as runner {node}" in cluster.log_of(p)
    )

    # When the admin cancels it
    with cluster.server.client("admin") as admin:
        assert admin.post(f"/api/admin/jobs/{job_id}/cancel").status_code == 200

    # Then the worker that claimed it terminates its task (beside Redis), or tells its
    # plugin, which stops at its next step (the embedded broker's pool cannot terminate one)
    expected = "its task" if cluster.broker_url.startswith("redis") else "its plugin is told"
    wait_for(
        lambda: f"job {job_id} cancelled: {expected}" in cluster.log_of(worker),
        timeout_s=10,
        what="the worker to stop the task",
    )
    # And once the job's own 6 s are over it is still failed "cancelled", nothing completed
    time.sleep(max(0.0, running["created_at"] / 1000 + 7 - time.time()))
    job = cluster.job(job_id)
    assert (job["status"], job["error_message"], job["output_data"]) == (
        "failed",
        "cancelled",
        None,
    )
    # And the worker goes on: the next job completes, and a resubmit runs the cancelled one
    quick = cluster.submit("hello_world", {**params, "processing_time": 0.2}).json()["job_id"]
    assert cluster.wait_for_status(quick, "completed", "failed")["status"] == "completed"
    again = cluster.submit("hello_world", params)
    assert again.json()["job_id"] == job_id and again.json()["status"] == "pending"
