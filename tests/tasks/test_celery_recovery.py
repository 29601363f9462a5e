"""Recovery without the happy path: a job out of attempts, a broker down at submit, Flower."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Backend, Cluster, free_port, plain_http, running_cluster, wait_for

HEARTBEAT_TIMEOUT_S = 4
REAP_INTERVAL_S = 1


@pytest.fixture(scope="module")
def single_attempt(
    backend: Backend,
    module_database_url: str,
    plugin_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    """A cluster with RUNPACK_MAX_ATTEMPTS=1, whose API cannot reach the broker."""
    tmp = tmp_path_factory.mktemp("single")
    unreachable = (
        "redis://127.0.0.1:1/0"
        if backend.redis_url
        else f"filesystem://{tmp / 'missing' / 'broker'}"
    )
    with running_cluster(
        backend,
        module_database_url,
        tmp,
        plugin_dir,
        extra_env={"RUNPACK_MAX_ATTEMPTS": "1"},
        api_env={"RUNPACK_BROKER_URL": unreachable},
    ) as cluster:
        yield cluster


def test_a_broker_unreachable_at_submit_loses_no_job(
    single_attempt: Cluster, backend: Backend
) -> None:
    # Given an API whose messages cannot reach any worker
    if backend.redis_url:
        health = plain_http.get(f"{single_attempt.server.url}/health")
        assert health.status_code == 503 and health.json()["broker"].startswith("unreachable")
    started = time.monotonic()
    answer = single_attempt.submit("noop", {"n": uuid.uuid4().hex})
    # Then the submission is accepted at once, and beat's publication gets it run
    assert answer.status_code == 201
    assert time.monotonic() - started < 5
    job = single_attempt.wait_for_status(answer.json()["job_id"], "completed")
    assert job["published_at"] is not None


def test_out_of_attempts_a_killed_job_fails_with_the_timeout_message(
    single_attempt: Cluster,
) -> None:
    # Given a job running on a worker
    job_id = single_attempt.submit(
        "hello_world", {"name": uuid.uuid4().hex, "processing_time": 30}
    ).json()["job_id"]
    single_attempt.wait_for_status(job_id, "in_progress", timeout_s=60)

    # When the worker is killed with SIGKILL
    for process in single_attempt.processes[1:]:
        if process.poll() is None:
            single_attempt.kill(process)
    killed_at = time.monotonic()

    # Then, with one attempt allowed, the job fails with the timeout message, in time
    deadline_s = HEARTBEAT_TIMEOUT_S + REAP_INTERVAL_S + 5
    job = single_attempt.wait_for_status(job_id, "failed", "completed", timeout_s=deadline_s + 5)
    assert job["status"] == "failed"
    assert job["error_message"] == f"timed out: no heartbeat for {HEARTBEAT_TIMEOUT_S} s"
    assert job["attempts"] == 1
    assert time.monotonic() - killed_at < deadline_s


def test_flower_lists_tasks_with_their_job_type(single_attempt: Cluster) -> None:
    # Given Flower on a free loopback port, and a worker
    port = free_port()
    single_attempt.start_worker()
    log = (single_attempt.tmp_dir / "flower.log").open("wb")
    flower = subprocess.Popen(
        [sys.executable, "-m", "runpack_api.cli", "flower", "--port", str(port)],
        env=single_attempt.env,
        cwd=single_attempt.tmp_dir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    single_attempt.processes.append(flower)
    auth = ("admin", single_attempt.server.keys.admin)
    url = f"http://127.0.0.1:{port}"
    wait_for(
        lambda: plain_http.get(f"{url}/api/workers", auth=auth).status_code == 200,
        timeout_s=60,
        what="Flower",
    )

    # When jobs run (Flower turns the workers' task events on every few seconds after it
    # starts, so the first may pass unseen: submit until one is seen)
    def flower_task(job_id: str) -> dict[str, object] | None:
        tasks = plain_http.get(f"{url}/api/tasks", auth=auth).json()
        return next((t for t in tasks.values() if job_id in str(t.get("args"))), None)

    def a_job_seen_by_flower() -> dict[str, object] | None:
        job_id = single_attempt.submit("noop", {"n": uuid.uuid4().hex}).json()["job_id"]
        single_attempt.wait_for_status(job_id, "completed")
        try:
            return wait_for(lambda: flower_task(job_id), timeout_s=3, what="the task")
        except AssertionError:
            return None

    # Then Flower's task list has it, with its job type and job id
    task = wait_for(a_job_seen_by_flower, timeout_s=60, interval_s=0, what="a task in Flower")
    assert "noop" in str(task["kwargs"])
    assert task["name"] == "runpack.execute"
    assert plain_http.get(f"{url}/api/tasks").status_code == 401  # the admin key guards it
