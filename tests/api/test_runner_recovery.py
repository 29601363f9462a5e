"""A ``runpack runner`` through faults of its own: killed, stopped by SIGTERM, or cut off
from the API for longer than a job takes.

What is tested here is the runner's side (its saved id, its held reports, its signals); the
server's side of each (reaping, release) is tested on both backends elsewhere, so this
module runs on one: PostgreSQL + Redis when configured, else the embedded default.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import (
    EMBEDDED,
    Backend,
    Cluster,
    database_answers,
    free_port,
    postgres_backend,
    running_cluster,
    tally_runs,
    wait_for,
)

#: Longer than what is left of the job when the API goes down, short enough that the
#: runner's backoff (0.5 s, doubling) has not grown to many seconds when it is back.
OUTAGE_S = 3


@pytest.fixture(scope="session")
def backend() -> Backend:
    """One backend for this module: PostgreSQL + Redis when configured, else the embedded."""
    return postgres_backend() or EMBEDDED


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
    # Given a runner in the middle of a 2 s job, with a heartbeat timeout longer than the outage
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
            job_id = cluster.submit("tally", {"log": str(log), "seconds": 2}).json()["job_id"]
            cluster.wait_for_status(job_id, "in_progress")

            # When that API is down for 3 s (the job finishes meanwhile)
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
