"""A cancelled job on a ``runpack runner``: its plugin is told, then interrupted, and no
report of it is taken.

The runner's side of a cancel does not depend on the database, so this module runs on one
backend (PostgreSQL + Redis when configured); ``test_cancel.py`` covers the server's side on
both.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.support import EMBEDDED, Backend, Cluster, postgres_backend, tally_runs, wait_for


@pytest.fixture(scope="session")
def backend() -> Backend:
    """One backend for this module: PostgreSQL + Redis when configured, else the embedded."""
    return postgres_backend() or EMBEDDED


def _cancelled_and_stays_so(cluster: Cluster, job_id: str, run_s: float) -> None:
    """The job is failed "cancelled" now, and still is once its own run time has passed."""
    job = cluster.wait_for_status(job_id, "failed", timeout_s=10)
    assert job["error_message"] == "cancelled", job
    time.sleep(max(0.0, job["created_at"] / 1000 + run_s + 1 - time.time()))
    later = cluster.job(job_id)
    assert (later["status"], later["error_message"], later["output_data"]) == (
        "failed",
        "cancelled",
        None,
    )


def _cancel(cluster: Cluster, job_id: str) -> None:
    with cluster.server.client("admin") as admin:
        assert admin.post(f"/api/admin/jobs/{job_id}/cancel").status_code == 200


def test_cancel_stops_the_runners_plugin_and_its_report_is_refused(
    http_only: Cluster, tmp_path: Path
) -> None:
    # Given a runpack runner in the middle of a 4 s hello_world, which polls its context
    runner = http_only.start_runner("hello_world,tally", tmp_path / "runner.json")
    params = {"name": f"Cancel {uuid.uuid4().hex[:6]}", "processing_time": 4}
    polite = http_only.submit("hello_world", params).json()["job_id"]
    http_only.wait_for_status(polite, "in_progress")

    # When the admin cancels it
    _cancel(http_only, polite)

    # Then the runner's next heartbeat gets 409, its plugin stops at its next step, and its
    # error report is refused (409) before the 4 s are over
    wait_for(
        lambda: f"job {polite}: error answered HTTP 409" in http_only.log_of(runner),
        timeout_s=4,
        what="the plugin to stop and its report to be refused",
    )
    assert f"job {polite} was cancelled" in http_only.log_of(runner)
    _cancelled_and_stays_so(http_only, polite, 4)

    # Given a plugin that ignores the cancellation and ends within the grace (tally, 3 s)
    log = tmp_path / "tally.log"
    late = http_only.submit("tally", {"log": str(log), "seconds": 3}).json()["job_id"]
    http_only.wait_for_status(late, "in_progress")
    # When it is cancelled, then its completion is refused (409) and dropped
    _cancel(http_only, late)
    wait_for(
        lambda: f"job {late}: complete answered HTTP 409" in http_only.log_of(runner),
        timeout_s=10,
        what="the late completion to be refused",
    )
    _cancelled_and_stays_so(http_only, late, 3)

    # Given a plugin that ignores the cancellation past the grace (tally, 8 s)
    stubborn = http_only.submit("tally", {"log": str(log), "seconds": 8}).json()["job_id"]
    http_only.wait_for_status(stubborn, "in_progress")
    # When it is cancelled, then it is interrupted after the grace, reporting nothing
    _cancel(http_only, stubborn)
    wait_for(
        lambda: f"job {stubborn}: its plugin went on" in http_only.log_of(runner),
        timeout_s=15,
        what="the ignoring plugin to be interrupted",
    )
    _cancelled_and_stays_so(http_only, stubborn, 8)
    assert tally_runs(log)[stubborn] == 1

    # And the runner goes on with the next job
    done = http_only.submit("hello_world", {**params, "processing_time": 0.2}).json()["job_id"]
    assert http_only.wait_for_status(done, "completed", "failed")["status"] == "completed"
    assert runner.poll() is None
