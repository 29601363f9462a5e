"""HTTP runners and the command line against a real API, beat and (sometimes) a Celery worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support import (
    Backend,
    Cluster,
    database_answers,
    free_port,
    register,
    running_cluster,
    tally_runs,
    wait_for,
)

OUTAGE_S = 6
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


def test_a_killed_runner_s_job_is_reaped_and_the_restarted_runner_keeps_its_id(
    http_only: Cluster,
    tmp_path: Path,
) -> None:
    # Given a runner in the middle of a job
    state = tmp_path / "runner.json"
    runner = http_only.start_runner("tally", state)
    log = tmp_path / "tally.log"
    job_id = http_only.submit("tally", {"log": str(log), "seconds": 4}).json()["job_id"]
    first = http_only.wait_for_status(job_id, "in_progress")
    runner_id = first["claimed_by"]

    # When it is killed with SIGKILL
    http_only.kill(runner)

    # Then beat reaps the job back to pending (an attempt remains)
    http_only.wait_for_status(job_id, "pending", timeout_s=30)
    # And the restarted runner reuses its id, and completes the job
    http_only.start_runner("tally", state)
    job = http_only.wait_for_status(job_id, "completed", timeout_s=60)
    assert job["claimed_by"] == runner_id
    assert job["attempts"] == 2
    assert tally_runs(log)[job_id] == 2  # killed once, then run to the end


def test_an_api_outage_mid_job_loses_nothing_and_runs_once(
    backend: Backend,
    database_url: str,
    plugin_dir: Path,
    tmp_path: Path,
) -> None:
    # Given a runner in the middle of a 4 s job, with a heartbeat timeout longer than the outage
    with running_cluster(
        backend,
        database_url,
        tmp_path,
        plugin_dir,
        workers=0,
        extra_env={"RUNPACK_HEARTBEAT_TIMEOUT_S": "60"},
    ) as cluster:
        port = free_port()
        api_env = {**cluster.env, "RUNPACK_BROKER_URL": cluster.broker_url}
        command = [sys.executable, "-m", "runpack_api.cli", "api", "--port", str(port)]
        api = subprocess.Popen(
            command, env=api_env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        own_url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: database_answers(own_url), timeout_s=60, what="the runners' API")
            cluster.start_runner("tally", tmp_path / "runner.json", url=own_url)
            log = tmp_path / "tally.log"
            job_id = cluster.submit("tally", {"log": str(log), "seconds": 4}).json()["job_id"]
            cluster.wait_for_status(job_id, "in_progress")

            # When that API is down for 6 s (the job finishes meanwhile)
            api.send_signal(signal.SIGKILL)
            api.wait()
            outage_ends = time.monotonic() + OUTAGE_S
            while time.monotonic() < outage_ends:
                assert tally_runs(log)[job_id] == 1  # still the one run, nothing restarted
                time.sleep(0.5)
            api = subprocess.Popen(
                command,
                env=api_env,
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

            # Then the job still completes, exactly once
            job = cluster.wait_for_status(job_id, "completed", timeout_s=90)
        finally:
            api.kill()
            api.wait()
    assert job["attempts"] == 1
    assert tally_runs(log) == {job_id: 1}
    assert job["output_data"] == {"count": 1}


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


def test_sigterm_finishes_the_current_job_and_a_second_releases_it(
    http_only: Cluster,
    tmp_path: Path,
) -> None:
    state = tmp_path / "runner.json"
    log = tmp_path / "tally.log"
    # Given a runner running a job: one SIGTERM lets it finish, then the runner exits
    runner = http_only.start_runner("tally", state)
    first = http_only.submit("tally", {"log": str(log), "seconds": 3}).json()["job_id"]
    http_only.wait_for_status(first, "in_progress")
    os.killpg(runner.pid, signal.SIGTERM)
    assert runner.wait(timeout=30) == 0
    assert http_only.job(first)["status"] == "completed"

    # Given another running job: two SIGTERMs give it back without using an attempt
    runner = http_only.start_runner("tally", state)
    second = http_only.submit("tally", {"log": str(log), "seconds": 30}).json()["job_id"]
    http_only.wait_for_status(second, "in_progress")
    os.killpg(runner.pid, signal.SIGTERM)
    # (signals of one kind do not queue: the second is sent once the first was handled)
    wait_for(lambda: "stopping after" in http_only.log_of(runner), what="the first SIGTERM handled")
    os.killpg(runner.pid, signal.SIGTERM)
    assert runner.wait(timeout=30) == 0
    released = http_only.job(second)
    assert released["status"] == "pending" and released["attempts"] == 0


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
