"""HTTP runners and the command line against a real API, beat and (sometimes) a Celery worker."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support import (
    Cluster,
    register,
    tally_runs,
    wait_for,
)

#: Jobs the two HTTP runners and the Celery worker share.
SHARED_JOBS = 60


def runpack_cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**cluster.env, "RUNPACK_URL": cluster.server.url}
    return subprocess.run(
        [sys.executable, "-m", "runpack_api.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cluster.tmp_dir,
    )


def test_submit_wait_through_an_http_runner(http_only: Cluster, tmp_path: Path) -> None:
    # Given an HTTP runner for hello_world and no Celery worker
    http_only.start_runner("hello_world", tmp_path / "runner.json")

    # When a person submits a job and waits for it
    done = runpack_cli(
        http_only, "submit", "hello_world", "name=Ada", "processing_time=4", "--wait"
    )

    # Then the greeting is printed, the exit code is 0, and progress went through the middle
    assert done.returncode == 0, done.stderr
    assert '"greeting": "Hello, Ada!"' in done.stdout
    progress = [
        line.split()[1]
        for line in done.stderr.splitlines()
        if line.startswith(("in_progress", "claimed"))
    ]
    intermediate = [
        p for p in progress if p != "None/None" and p.split("/")[0] not in ("0", p.split("/")[1])
    ]
    assert intermediate, done.stderr
    # And the HTTP runner is the one that claimed and ran it
    job = http_only.job(json.loads(done.stdout)["job_id"])
    runner_id = json.loads((tmp_path / "runner.json").read_text())["runner_id"]
    assert job["claimed_by"] == runner_id
    with http_only.server.client("admin") as admin:
        assert admin.get(f"/api/admin/runners/{runner_id}").json()["kind"] == "http"


def test_two_http_runners_and_a_celery_worker_run_each_job_once(
    http_only: Cluster,
    tmp_path: Path,
) -> None:
    # Given two HTTP runners and one Celery worker serving the same type
    http_only.start_runner("tally", tmp_path / "a.json", name="a")
    http_only.start_runner("tally", tmp_path / "b.json", name="b")
    http_only.start_worker(types="tally", concurrency=2)
    log = tmp_path / "tally.log"

    # When SHARED_JOBS jobs are submitted
    def submit(n: int) -> str:
        answer = http_only.submit("tally", {"log": str(log), "n": n})
        assert answer.status_code == 201
        return str(answer.json()["job_id"])

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(submit, range(SHARED_JOBS)))

    # Then each is completed, and each ran exactly once
    wait_for(
        lambda: sum(tally_runs(log).values()) >= SHARED_JOBS,
        timeout_s=240,
        interval_s=0.5,
        what=f"{SHARED_JOBS} executions",
    )
    for job_id in ids:
        http_only.wait_for_status(job_id, "completed")
    runs = tally_runs(log)
    assert set(runs) == set(ids)
    assert set(runs.values()) == {1}


def test_a_runner_the_server_forgot_registers_again(http_only: Cluster, tmp_path: Path) -> None:
    state = tmp_path / "runner.json"
    state.write_text(json.dumps({"runner_id": "forgotten", "url": http_only.server.url}))
    http_only.start_runner("noop", state)
    job_id = http_only.submit("noop", {"n": uuid.uuid4().hex}).json()["job_id"]
    job = http_only.wait_for_status(job_id, "completed")
    assert job["claimed_by"] != "forgotten"
    assert job["claimed_by"] in state.read_text()


def test_cli_reports_a_failed_job_with_a_non_zero_exit(http_only: Cluster, tmp_path: Path) -> None:
    http_only.start_runner("hello_world", tmp_path / "runner.json")
    failed = runpack_cli(
        http_only,
        "submit",
        "hello_world",
        "processing_time=0",
        "test_exception=true",
        f"name={uuid.uuid4().hex}",
        "--wait",
        "--json",
    )
    assert failed.returncode == 1
    assert '"status": "failed"' in failed.stdout
    assert "Test exception requested" in failed.stdout


def test_runpack_cancel_cancels_and_explains_a_refusal(http_only: Cluster) -> None:
    # Given a pending job (a type nothing serves) and a completed one
    pending = http_only.submit("unserved", {"n": uuid.uuid4().hex}).json()["job_id"]
    runner_id = register(http_only.server, ["unserved"])
    finished = http_only.submit("unserved", {"n": uuid.uuid4().hex}).json()["job_id"]
    with http_only.server.client("runner", runner_id) as runner:
        runner.post(f"/api/runner/jobs/{finished}/claim")
        runner.post(f"/api/runner/jobs/{finished}/complete", json={"output_data": {}})

    # When `runpack cancel` is run on each
    cancelled = runpack_cli(http_only, "cancel", pending)
    refused = runpack_cli(http_only, "cancel", finished)

    # Then the first says so and the job failed "cancelled"; the second exits 2 with one
    # line giving the server's reason
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"Job {pending} cancelled" in cancelled.stdout
    assert (http_only.job(pending)["status"], http_only.job(pending)["error_message"]) == (
        "failed",
        "cancelled",
    )
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].endswith(
        f"job {finished} is already completed: only a pending or running job can be cancelled"
    )
