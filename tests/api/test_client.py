"""RunpackClient against the API, and the CLI's parameter parsing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest

from runpack_api.cli.client import parse_params
from runpack_api.client import RunpackAPIError, RunpackClient
from runpack_api.schemas import JobStatusResponse
from runpack_tasks.jobstore.models import JobStatus
from tests.support import ApiServer, libraries_loaded, register, unique_params, wait_for


def client_for(server: ApiServer) -> RunpackClient:
    return RunpackClient(
        server.url,
        submit_key=server.keys.submit,
        admin_key=server.keys.admin,
        transport=server.transport(None, None),
    )


def test_submit_check_status_and_admin_views_are_typed(server: ApiServer) -> None:
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


def test_errors_carry_the_server_message(server: ApiServer) -> None:
    with client_for(server) as client:
        with pytest.raises(RunpackAPIError) as bad:
            client.submit("bad type", {})
        assert bad.value.status_code == 400 and "job_type" in bad.value.message
        with pytest.raises(RunpackAPIError) as missing:
            client.status("no-such-job")
        assert missing.value.status_code == 404 and "no-such-job" in missing.value.message
    with (
        RunpackClient(
            server.url, submit_key="wrong", transport=server.transport(None, None)
        ) as wrong,
        pytest.raises(RunpackAPIError) as refused,
    ):
        wrong.submit("x", {})
    assert refused.value.status_code == 401


def test_wait_reports_progress_until_the_job_finishes(server: ApiServer) -> None:
    seen: list[JobStatusResponse] = []

    def running_at_half(status: JobStatusResponse) -> bool:
        progress = status.progress
        return status.status is JobStatus.IN_PROGRESS and (
            progress is not None and (progress.current, progress.total) == (1, 2)
        )

    with client_for(server) as client, ThreadPoolExecutor(1) as pool:
        # Given a job a runner is running, halfway through
        job_id = client.submit("manual", unique_params()).job_id
        runner_id = register(server, ["manual"])
        with server.client("runner", runner_id) as runner:
            assert runner.post(f"/api/runner/jobs/{job_id}/claim").status_code == 200
            beat = runner.post(
                f"/api/runner/jobs/{job_id}/heartbeat",
                json={"progress_current": 1, "progress_total": 2},
            )
            assert beat.status_code == 200

            # When a client waits for it
            waiting = pool.submit(
                client.wait, job_id, timeout_s=30, poll_interval_s=0.05, on_progress=seen.append
            )

            # Then the wait shows the progress while the job still runs
            wait_for(lambda: any(map(running_at_half, seen)), what="progress seen by the wait")
            assert not waiting.done()

            # And when the runner completes it, the wait returns the result
            done = runner.post(
                f"/api/runner/jobs/{job_id}/complete", json={"output_data": {"v": 1}}
            )
            assert done.status_code == 200
            final = waiting.result(timeout=30)
    assert final.status is JobStatus.COMPLETED
    assert final.result is not None and final.result.output_data == {"v": 1}
    assert seen[-1].status is JobStatus.COMPLETED


def test_wait_gives_up_after_its_timeout(server: ApiServer) -> None:
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
    ) == [
        {
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
    ]
    with pytest.raises(ValueError, match="key=value"):
        parse_params(["novalue"], None)


def test_cli_params_file_of_json_lines_is_one_job_a_line(tmp_path: Path) -> None:
    lines = tmp_path / "jobs.jsonl"
    lines.write_text('{"n": 1}\n\n{"n": 2, "k": "x"}\n')
    assert parse_params(["k=y"], lines) == [{"n": 1, "k": "y"}, {"n": 2, "k": "y"}]
    pretty = tmp_path / "one.json"
    pretty.write_text('{\n  "n": 1\n}\n')
    assert parse_params([], pretty) == [{"n": 1}]
    for text, said in (('{"n": 1}\n[1]\n', "line 2 is not a JSON object"), ("{}\n{", "line 2")):
        lines.write_text(text)
        with pytest.raises(ValueError, match=said):
            parse_params([], lines)


def test_submit_many_sends_batches_and_answers_in_order(server: ApiServer) -> None:
    params = [unique_params() for _ in range(4)]
    jobs = [("many", p) for p in params] + [("many", params[0])]
    seen: list[int] = []
    with client_for(server) as client:
        answers = client.submit_many(
            jobs, batch_size=2, on_batch=lambda done: seen.append(len(done))
        )
        assert seen == [2, 2, 1]
        assert [a.created for a in answers] == [True, True, True, True, False]
        assert answers[4].job_id == answers[0].job_id
        assert client.submit("many", params[1]).job_id == answers[1].job_id
        statuses = client.statuses([a.job_id for a in answers[:2]] + ["no-such-job"])
        assert [s.job_id if s else None for s in statuses] == [
            answers[0].job_id,
            answers[1].job_id,
            None,
        ]
        with pytest.raises(RunpackAPIError) as refused:
            client.submit_many([("many", unique_params()), ("bad type", {})])
        assert refused.value.status_code == 400 and refused.value.message.startswith("jobs[1]")


def test_wait_many_follows_jobs_until_all_finished(server: ApiServer) -> None:
    with client_for(server) as client:
        ids = [
            a.job_id for a in client.submit_many([("waited", unique_params()) for _ in range(3)])
        ]
        runner_id = register(server, ["waited"])
        finished: list[str] = []

        def finish_all() -> None:
            with server.client("runner", runner_id) as runner:
                for n, job_id in enumerate(ids):
                    runner.post(f"/api/runner/jobs/{job_id}/claim")
                    if n == 2:
                        runner.post(f"/api/runner/jobs/{job_id}/error", json={"error_message": "x"})
                    else:
                        runner.post(f"/api/runner/jobs/{job_id}/complete", json={"output_data": {}})

        with ThreadPoolExecutor(1) as pool:
            pool.submit(finish_all)
            final = client.wait_many(
                ids + ids[:1],
                poll_interval_s=0.05,
                timeout_s=30,
                on_finished=lambda done: finished.extend(s.job_id for s in done if s),
            )
    assert sorted(finished) == sorted(ids)
    assert [final[job_id].status.value for job_id in ids] == ["completed", "completed", "failed"]  # type: ignore[union-attr]


def test_submit_many_waits_out_a_rate_limited_batch() -> None:
    # a stand-in server: the first batch is over the rate limit, the next is answered
    asked: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(len(orjson.loads(request.content)["jobs"]))
        if len(asked) == 1:
            return httpx.Response(429, headers={"Retry-After": "0"}, json={"error": "slow down"})
        item = {"job_id": "j", "status": "pending", "message": "m", "created": True}
        return httpx.Response(200, json={"results": [item] * asked[-1]})

    with RunpackClient(
        "http://127.0.0.1:9", submit_key="k", transport=httpx.MockTransport(answer)
    ) as client:
        answers = client.submit_many([("t", {"n": n}) for n in range(3)])
    assert asked == [3, 3] and len(answers) == 3


def test_the_client_and_the_runner_load_no_server_library() -> None:
    # the command line and HTTP runners run where no server does: loading FastAPI and
    # SQLAlchemy took about 0.6 s of CPU from each of their starts
    servers = {"fastapi", "starlette", "sqlalchemy", "sqlmodel", "celery", "alembic"}
    code = "import runpack_api.cli, runpack_api.client, runpack_api.runner_client"
    assert libraries_loaded(code, servers) == []
    assert libraries_loaded("import runpack_api.app", servers) != []  # it would see them
