"""Cancel over HTTP (SPEC §2, §8): a pending or running job fails with "cancelled", its
runner's reports are refused from then on, a finished job answers 409."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import Engine

from runpack_api.client import RunpackAPIError, RunpackClient
from tests.support import (
    ApiServer,
    InProcessServer,
    assert_error,
    nothing_changes,
    register,
    submit,
    unique_params,
)

JOB_TYPE = "cancel_contract"


def _cancel(server: ApiServer, job_id: str) -> httpx.Response:
    with server.client("admin") as admin:
        return admin.post(f"/api/admin/jobs/{job_id}/cancel")


def _refusal(answer: httpx.Response) -> str:
    """The 409's error (it also carries the seed's ``{success: false, message}``)."""
    assert answer.status_code == 409, answer.text
    body = answer.json()
    assert body["success"] is False and body["message"] == body["error"], body
    message: str = body["error"]
    return message


def _status(server: ApiServer, job_id: str) -> dict[str, object]:
    with server.client("submit") as client:
        found: dict[str, object] = client.get(f"/api/jobs/{job_id}").json()
    return found


def test_a_pending_job_is_cancelled_and_a_resubmit_requeues_it(server: ApiServer) -> None:
    # Given a pending job
    params = unique_params()
    job_id = submit(server, JOB_TYPE, params).json()["job_id"]

    # When the admin cancels it
    answer = _cancel(server, job_id)

    # Then it answers 200 {success: true} and the job failed with "cancelled"
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"success": True, "message": f"Job {job_id} cancelled"}
    status = _status(server, job_id)
    assert status["status"] == "failed" and status["error"] == "cancelled"
    # And cancelling it again is a 409 naming its state
    assert "already failed" in _refusal(_cancel(server, job_id))
    # And a resubmit requeues it like any failed job, under the same id
    again = submit(server, JOB_TYPE, params)
    assert again.json()["job_id"] == job_id and again.json()["status"] == "pending"


def test_a_claimed_job_is_cancelled_and_its_runner_is_refused(server: ApiServer) -> None:
    # Given a job a runner claimed and is reporting on
    runner_id = register(server, [JOB_TYPE])
    job_id = submit(server, JOB_TYPE, unique_params()).json()["job_id"]
    with server.client("runner", runner_id) as runner:
        assert runner.post(f"/api/runner/jobs/{job_id}/claim").status_code == 200
        assert runner.post(f"/api/runner/jobs/{job_id}/heartbeat", json={}).status_code == 200

        # When the admin cancels it
        assert _cancel(server, job_id).status_code == 200

        # Then the runner's next heartbeat, its completion and its error get 409
        assert runner.post(f"/api/runner/jobs/{job_id}/heartbeat", json={}).status_code == 409
        done = runner.post(f"/api/runner/jobs/{job_id}/complete", json={"output_data": {"v": 1}})
        assert done.status_code == 409
        assert (
            runner.post(f"/api/runner/jobs/{job_id}/error", json={"error_message": "x"}).status_code
            == 409
        )
    # And the job stays failed "cancelled", with no output
    status = _status(server, job_id)
    assert (status["status"], status["error"]) == ("failed", "cancelled")
    assert status.get("result") is None


def test_a_finished_or_unknown_job_is_refused_and_nothing_changes(
    server: ApiServer, server_engine: Engine
) -> None:
    runner_id = register(server, [JOB_TYPE])
    job_id = submit(server, JOB_TYPE, unique_params()).json()["job_id"]
    with server.client("runner", runner_id) as runner:
        runner.post(f"/api/runner/jobs/{job_id}/claim")
        runner.post(f"/api/runner/jobs/{job_id}/complete", json={"output_data": {"v": 1}})
    with nothing_changes(server_engine):
        message = _refusal(_cancel(server, job_id))
        assert message == (
            f"job {job_id} is already completed: only a pending or running job can be cancelled"
        )
        assert_error(_cancel(server, "no-such-job"), 404)
        with server.client("submit") as client:
            assert_error(client.post(f"/api/admin/jobs/{job_id}/cancel"), 401)


def test_the_client_cancels_and_raises_the_409(server: InProcessServer) -> None:
    job_id = submit(server, JOB_TYPE, unique_params()).json()["job_id"]
    with RunpackClient(
        server.url, admin_key=server.keys.admin, transport=server.transport(None, None)
    ) as client:
        assert client.cancel(job_id).success is True
        with pytest.raises(RunpackAPIError) as refused:
            client.cancel(job_id)
    assert refused.value.status_code == 409 and "already failed" in refused.value.message
