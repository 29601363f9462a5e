"""RunpackClient against a live server, and the CLI's parameter parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from runpack_api.cli.client import parse_params
from runpack_api.client import RunpackAPIError, RunpackClient
from runpack_tasks.jobstore.models import JobStatus
from tests.api.test_flow import register
from tests.support import ServerProcess, unique_params


def client_for(server: ServerProcess) -> RunpackClient:
    return RunpackClient(server.url, submit_key=server.keys.submit, admin_key=server.keys.admin)


def test_submit_check_status_and_admin_views_are_typed(server: ServerProcess) -> None:
    params = unique_params()
    with client_for(server) as client:
        assert client.check("typed", params).exists is False
        created = client.submit("typed", params)
        assert created.status is JobStatus.PENDING
        assert client.submit("typed", params).job_id == created.job_id
        assert client.check("typed", params).job_id == created.job_id
        assert client.status(created.job_id).job_type == "typed"
        assert client.job(created.job_id).input_params == params
        assert created.job_id in [job.job_id for job in client.jobs(job_type="typed").jobs]
        assert client.stats().jobs.pending >= 1
        runner_id = register(server, ["typed"], name="typed-runner")
        assert client.runner(runner_id).name == "typed-runner"
        assert runner_id in [r.runner_id for r in client.runners().runners]


def test_errors_carry_the_server_message(server: ServerProcess) -> None:
    with client_for(server) as client:
        with pytest.raises(RunpackAPIError) as bad:
            client.submit("bad type", {})
        assert bad.value.status_code == 400 and "job_type" in bad.value.message
        with pytest.raises(RunpackAPIError) as missing:
            client.status("no-such-job")
        assert missing.value.status_code == 404 and "no-such-job" in missing.value.message
    with (
        RunpackClient(server.url, submit_key="wrong") as wrong,
        pytest.raises(RunpackAPIError) as refused,
    ):
        wrong.submit("x", {})
    assert refused.value.status_code == 401


def test_wait_reports_progress_until_the_job_finishes(server: ServerProcess) -> None:
    params = unique_params()
    seen: list[str] = []
    with client_for(server) as client:
        job_id = client.submit("manual", params).job_id
        runner_id = register(server, ["manual"])
        with server.client("runner", runner_id) as runner:
            runner.post(f"/api/runner/jobs/{job_id}/claim")
            runner.post(f"/api/runner/jobs/{job_id}/complete", json={"output_data": {"v": 1}})
        final = client.wait(
            job_id,
            timeout_s=30,
            poll_interval_s=0.1,
            on_progress=lambda status: seen.append(status.status.value),
        )
    assert final.status is JobStatus.COMPLETED
    assert final.result is not None and final.result.output_data == {"v": 1}
    assert seen[-1] == "completed"


def test_wait_gives_up_after_its_timeout(server: ServerProcess) -> None:
    with client_for(server) as client:
        job_id = client.submit("never_runs", unique_params()).job_id
        with pytest.raises(TimeoutError, match="still pending"):
            client.wait(job_id, timeout_s=0.3, poll_interval_s=0.1)


def test_cli_values_are_json_when_they_parse_and_text_otherwise(tmp_path: Path) -> None:
    params_file = tmp_path / "params.json"
    params_file.write_text('{"a": 1, "name": "from file"}')
    assert parse_params(
        [
            "name=Ada",
            "n=2",
            "x=2.5",
            "flag=true",
            "none=null",
            "list=[1,2]",
            "text=hello world",
            "eq=a=b",
        ],
        params_file,
    ) == {
        "a": 1,
        "name": "Ada",
        "n": 2,
        "x": 2.5,
        "flag": True,
        "none": None,
        "list": [1, 2],
        "text": "hello world",
        "eq": "a=b",
    }
    with pytest.raises(ValueError, match="key=value"):
        parse_params(["novalue"], None)
