"""A completed result is served only while it is valid (SPEC §8): its time to live, its
cache_version, its plugin's result_valid hook; expiry, admin expiry and compute saved."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from runner_plugins import JobContext, Plugin
from runpack_api.runtime import Runtime
from runpack_tasks.jobstore import runners
from runpack_tasks.jobstore.models import RunnerKind
from tests.api.test_metrics import scrape
from tests.plugins.test_artifact import artifact_in, run, serving_folder
from tests.support import (
    Backend,
    InProcessServer,
    assert_error,
    plain_http,
    register,
    serving_in_process,
    stored_job,
    submit,
    wait_for,
)

#: Settings of this module's server: hooks time out after 1 s, a True is trusted 2 s, the
#: result cache would keep answers 30 s (so a test sees whether entries outlive results).
SETTINGS = {
    "RUNPACK_VALIDITY_TIMEOUT_S": "1",
    "RUNPACK_VALIDITY_CACHE_S": "2",
    "RUNPACK_RESULT_CACHE_TTL_S": "30",
}


class _Stub(Plugin):
    """Test plugins are only judged here; runners in these tests report results by hand."""

    def run(self, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        raise NotImplementedError


class ShortLived(_Stub):
    """Results served for one second."""

    name = "short_lived"
    result_ttl_s = 1.0


class Versioned(_Stub):
    """Its code is at cache_version 2."""

    name = "versioned"
    cache_version = "2"


class Scripted(_Stub):
    """``result_valid`` does what the file its result names says: ``valid``, ``invalid``,
    ``raise`` or ``sleep <seconds>`` (then valid); each call is logged beside it."""

    name = "scripted"

    def result_valid(self, output_data: dict[str, Any]) -> bool:
        script = Path(output_data["script"])
        with script.with_suffix(".calls").open("a") as calls:
            calls.write("called\n")
        action = script.read_text().split()
        if action[0] == "raise":
            raise RuntimeError("the check broke")
        if action[0] == "sleep":
            time.sleep(float(action[1]))
        return action[0] != "invalid"


TEST_PLUGINS: tuple[type[Plugin], ...] = (ShortLived, Versioned, Scripted)


@pytest.fixture(scope="module")
def server(
    backend: Backend, module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessServer]:
    """The app in process, with this module's settings and test plugins installed."""
    tmp_dir = tmp_path_factory.mktemp("lifetime")
    with serving_in_process(module_database_url, backend, tmp_dir, SETTINGS) as srv:
        runtime = runtime_of(srv)
        runtime.plugins = {**runtime.plugins, **{cls.name: cls() for cls in TEST_PLUGINS}}
        yield srv


def runtime_of(server: InProcessServer) -> Runtime:
    runtime: Runtime = server.app.state.runtime
    return runtime


@pytest.fixture(scope="module")
def runner_id(server: InProcessServer) -> str:
    return register(server, [cls.name for cls in TEST_PLUGINS] + ["artifact", "plain"])


def complete(
    server: InProcessServer,
    runner_id: str,
    job_id: str,
    output: dict[str, Any],
    cache_version: str | None = None,
    run_s: float = 0.0,
) -> None:
    """Claim the job and report ``output`` after ``run_s`` seconds, as a runner would."""
    with server.client("runner", runner_id) as runner:
        assert runner.post(f"/api/runner/jobs/{job_id}/claim").status_code == 200
        time.sleep(run_s)  # the job's run time, which a cache hit saves
        body: dict[str, Any] = {"output_data": output}
        if cache_version is not None:
            body["cache_version"] = cache_version
        answer = runner.post(f"/api/runner/jobs/{job_id}/complete", json=body)
        assert answer.status_code == 200, answer.text


def computed(
    server: InProcessServer,
    runner_id: str,
    job_type: str,
    output: dict[str, Any],
    params: dict[str, Any] | None = None,
    **kw: Any,
) -> tuple[dict[str, Any], str]:
    """A new job of ``job_type`` (``params``, else unique ones), completed with ``output``:
    (its params, its id)."""
    params = params or {"id": uuid.uuid4().hex}
    created = submit(server, job_type, params)
    assert created.status_code == 201, created.text
    job_id: str = created.json()["job_id"]
    complete(server, runner_id, job_id, output, **kw)
    return params, job_id


def check(server: InProcessServer, job_type: str, params: dict[str, Any]) -> dict[str, Any]:
    with server.client("submit") as client:
        answer = client.post("/api/jobs/check", json={"job_type": job_type, "input_params": params})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def status(server: InProcessServer, job_id: str) -> dict[str, Any]:
    with server.client("submit") as client:
        answer = client.get(f"/api/jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def script(tmp_path: Path, action: str) -> Path:
    """A Scripted result's script file, saying ``action``."""
    path = tmp_path / f"script-{uuid.uuid4().hex[:8]}"
    path.write_text(action)
    return path


def hook_calls(script_path: Path) -> int:
    calls = script_path.with_suffix(".calls")
    return len(calls.read_text().splitlines()) if calls.exists() else 0


# --- time to live --------------------------------------------------------------------------


def test_a_result_is_served_until_its_time_to_live_then_expired_and_requeued(
    server: InProcessServer, runner_id: str, server_engine: Engine
) -> None:
    # Given a short_lived job (1 s time to live) completed, and served by all three routes
    params, job_id = computed(server, runner_id, "short_lived", {"v": 1})
    served = submit(server, "short_lived", params)
    assert served.status_code == 200 and served.json()["status"] == "completed"
    assert served.json()["result"]["output_data"] == {"v": 1}
    assert check(server, "short_lived", params)["status"] == "completed"
    assert status(server, job_id)["status"] == "completed"  # kept in the result cache (30 s)
    finished_at = stored_job(server_engine, job_id)["finished_at"]

    # When its time to live passes, Then check and status say expired (the result cache did
    # not outlive the result) and requeue nothing
    wait_for(lambda: status(server, job_id)["status"] == "expired", timeout_s=10, what="expiry")
    assert time.time() * 1000 >= finished_at + 1000
    checked = check(server, "short_lived", params)
    assert checked["status"] == "expired" and "result" not in checked
    assert stored_job(server_engine, job_id)["status"] == "expired"

    # And a submit requeues the same job, saying why
    again = submit(server, "short_lived", params)
    assert again.status_code == 200
    assert again.json()["job_id"] == job_id and again.json()["status"] == "pending"
    assert again.json()["message"] == "Job's cached result had expired; requeued"

    # And once recomputed, the new result is served
    complete(server, runner_id, job_id, {"v": 2})
    assert submit(server, "short_lived", params).json()["result"]["output_data"] == {"v": 2}


def test_the_global_time_to_live_applies_to_types_without_one(
    server: InProcessServer, runner_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given RUNPACK_RESULT_TTL_S=1 and a type no plugin here declares a TTL for
    runtime = runtime_of(server)
    monkeypatch.setattr(runtime.settings, "result_ttl_s", 1.0)
    params, _ = computed(server, runner_id, "plain", {"v": 1})
    assert check(server, "plain", params)["status"] == "completed"
    # Then it expires after a second like any other
    wait_for(lambda: check(server, "plain", params)["status"] == "expired", timeout_s=10)
    assert submit(server, "plain", params).json()["status"] == "pending"


# --- versions ------------------------------------------------------------------------------


def test_a_result_of_an_older_cache_version_is_recomputed_on_submit(
    server: InProcessServer, runner_id: str
) -> None:
    # Given a result made by cache_version 1 of a plugin now at 2
    params, job_id = computed(server, runner_id, "versioned", {"v": 1}, cache_version="1")

    # When it is submitted, Then it is requeued at once, saying which versions differ
    again = submit(server, "versioned", params).json()
    assert again["job_id"] == job_id and again["status"] == "pending"
    assert "cache_version '1'" in again["message"] and "'2'" in again["message"]

    # And its recomputation by the current code is served
    complete(server, runner_id, job_id, {"v": 2}, cache_version="2")
    assert submit(server, "versioned", params).json()["status"] == "completed"


def test_a_result_without_a_recorded_version_or_plugin_here_is_served(
    server: InProcessServer, runner_id: str
) -> None:
    # A runner that sends no cache_version (the seed's)
    params, _ = computed(server, runner_id, "versioned", {"v": 1})
    assert submit(server, "versioned", params).json()["status"] == "completed"
    # A type this API host has no plugin for, whatever version was recorded
    params, _ = computed(server, runner_id, "plain", {"v": 1}, cache_version="anything")
    assert submit(server, "plain", params).json()["status"] == "completed"


# --- validity hooks ------------------------------------------------------------------------


def test_a_hook_that_turns_false_expires_the_result_once_its_true_is_no_longer_trusted(
    server: InProcessServer, runner_id: str, tmp_path: Path
) -> None:
    # Given a result whose hook answers True, served once
    check_file = script(tmp_path, "valid")
    params, job_id = computed(server, runner_id, "scripted", {"script": str(check_file)})
    assert submit(server, "scripted", params).json()["status"] == "completed"
    assert hook_calls(check_file) == 1

    # When the hook turns False, Then its True is still trusted for a moment (not re-run)
    check_file.write_text("invalid")
    assert check(server, "scripted", params)["status"] == "completed"
    assert hook_calls(check_file) == 1

    # And then the next submit expires and requeues it, saying why
    def requeued() -> dict[str, Any] | None:
        answer = submit(server, "scripted", params).json()
        return answer if answer["status"] == "pending" else None

    answer = wait_for(requeued, timeout_s=10, interval_s=0.2, what="the result to expire")
    assert answer["job_id"] == job_id and "result_valid answered False" in answer["message"]
    assert hook_calls(check_file) == 2


def test_a_hook_that_raises_expires_the_result(
    server: InProcessServer, runner_id: str, tmp_path: Path
) -> None:
    params, job_id = computed(
        server, runner_id, "scripted", {"script": str(script(tmp_path, "raise"))}
    )
    answer = submit(server, "scripted", params).json()
    assert answer["job_id"] == job_id and answer["status"] == "pending"
    assert "raised RuntimeError: the check broke" in answer["message"]
    # the recomputed result, once its hook answers True, is served
    check_file = script(tmp_path, "valid")
    complete(server, runner_id, job_id, {"script": str(check_file)})
    assert submit(server, "scripted", params).json()["status"] == "completed"


def test_a_hook_past_its_timeout_expires_the_result_without_delaying_other_jobs(
    server: InProcessServer, runner_id: str, tmp_path: Path
) -> None:
    # Given a result whose hook sleeps 4 s (the timeout is 1 s), and another job's result
    slow = script(tmp_path, "sleep 4")
    slow_params, slow_id = computed(server, runner_id, "scripted", {"script": str(slow)})
    quick = script(tmp_path, "valid")
    quick_params, _ = computed(server, runner_id, "scripted", {"script": str(quick)})
    plain_params, _ = computed(server, runner_id, "plain", {"v": 1})

    # When the slow one is submitted
    answers: list[tuple[float, dict[str, Any]]] = []

    def submit_slow() -> None:
        started = time.monotonic()
        body = submit(server, "scripted", slow_params).json()
        answers.append((time.monotonic() - started, body))

    thread = threading.Thread(target=submit_slow)
    thread.start()
    wait_for(lambda: hook_calls(slow) == 1, what="the slow hook to start")

    # Then while its hook sleeps, other jobs are answered at once (a hook of their own too)
    for job_type, params in (("scripted", quick_params), ("plain", plain_params)):
        started = time.monotonic()
        answer = submit(server, job_type, params).json()
        latency_s = time.monotonic() - started
        assert answer["status"] == "completed"
        assert latency_s < 0.5, f"{job_type} took {latency_s:.2f} s while a hook slept"
    assert hook_calls(slow) == 1  # the slow hook was not run again meanwhile

    # And the slow one is answered after the timeout, expired and requeued
    thread.join(10)
    latency_s, body = answers[0]
    assert 0.9 <= latency_s < 3.5, latency_s
    assert body["job_id"] == slow_id and body["status"] == "pending"
    assert "no answer within 1 s" in body["message"]


def test_concurrent_requests_for_one_result_share_one_call_of_its_hook(
    server: InProcessServer, runner_id: str, tmp_path: Path
) -> None:
    # Given a result whose hook takes half a second
    check_file = script(tmp_path, "sleep 0.5")
    params, _ = computed(server, runner_id, "scripted", {"script": str(check_file)})
    # When ten clients ask for it at once
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: check(server, "scripted", params), range(10)))
    # Then all are served, and the hook ran once
    assert {a["status"] for a in answers} == {"completed"}
    assert hook_calls(check_file) == 1


def test_fifty_concurrent_submits_of_an_expired_result_requeue_it_once(
    server: InProcessServer, runner_id: str, server_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a short_lived result past its time to live, never served since
    params, job_id = computed(server, runner_id, "short_lived", {"v": 1})
    expires_at_s = stored_job(server_engine, job_id)["finished_at"] / 1000 + 1
    time.sleep(max(0.0, expires_at_s - time.time()) + 0.05)
    # And a Celery worker serving short_lived (so a requeue publishes a message), counted
    runtime = runtime_of(server)
    runners.register(server_engine, "worker", ["short_lived"], kind=RunnerKind.CELERY)
    runtime.publisher.served.forget()
    announced: list[str] = []
    monkeypatch.setattr(
        runtime.publisher,
        "announce_many",
        lambda jobs: announced.extend(job_id for job_id, _job_type in jobs),
    )

    # When 50 clients submit it at once
    start = threading.Barrier(50)

    def submit_once(_: int) -> httpx.Response:
        with server.client("submit") as client:
            start.wait()
            return client.post(
                "/api/jobs/submit", json={"job_type": "short_lived", "input_params": params}
            )

    with ThreadPoolExecutor(50) as pool:
        answers = [answer.json() for answer in pool.map(submit_once, range(50))]

    # Then every answer names the one job, pending; exactly one requeued it and one message
    # was published
    assert {a["job_id"] for a in answers} == {job_id}
    assert {a["status"] for a in answers} == {"pending"}
    requeued = [a["message"] for a in answers if "requeued" in a["message"]]
    assert len(requeued) == 1 and "expired" in requeued[0], requeued
    assert announced == [job_id]
    # And it runs once: one claim wins
    runners_ids = [register(server, ["short_lived"], name=f"r{n}") for n in range(2)]
    claims = []
    for other in runners_ids:
        with server.client("runner", other) as runner:
            claims.append(runner.post(f"/api/runner/jobs/{job_id}/claim").status_code)
    assert sorted(claims) == [200, 409]
    assert stored_job(server_engine, job_id)["attempts"] == 1


def served_until_gone(server: InProcessServer, params: dict[str, Any], job_id: str) -> str:
    """Wait until a submit of this artifact job requeues it; the message it gave."""

    def requeued() -> str | None:
        answer = submit(server, "artifact", params).json()
        assert answer["job_id"] == job_id
        return str(answer["message"]) if answer["status"] == "pending" else None

    return wait_for(requeued, timeout_s=10, interval_s=0.2, what="the artifact to expire")


def test_an_artifact_whose_file_is_removed_is_computed_again(
    server: InProcessServer, runner_id: str, tmp_path: Path
) -> None:
    # Given an artifact job whose runner wrote its file, served
    text = f"the file {uuid.uuid4()}"
    output = run(artifact_in(tmp_path), text)
    params, job_id = computed(server, runner_id, "artifact", output, {"text": text})
    assert submit(server, "artifact", params).json()["result"]["output_data"] == output
    # When the file is removed, Then the result expires and the job is requeued
    Path(output["path"]).unlink()
    assert "artifact's result_valid answered False" in served_until_gone(server, params, job_id)


def test_an_artifact_whose_url_starts_answering_404_is_computed_again(
    server: InProcessServer, runner_id: str, tmp_path: Path
) -> None:
    with serving_folder(tmp_path) as url:
        # Given an artifact published under a loopback URL, served
        text = f"the page {uuid.uuid4()}"
        output = run(artifact_in(tmp_path, base_url=url), text)
        params, job_id = computed(server, runner_id, "artifact", output, {"text": text})
        assert submit(server, "artifact", params).json()["status"] == "completed"
        # When the web server no longer has it (404), Then the result expires
        Path(output["path"]).unlink()
        assert plain_http.get(output["url"]).status_code == 404
        assert "answered False" in served_until_gone(server, params, job_id)


# --- admin expiry --------------------------------------------------------------------------


def test_an_admin_expires_one_completed_job(server: InProcessServer, runner_id: str) -> None:
    # Given a completed job whose status is in the result cache
    params, job_id = computed(server, runner_id, "plain", {"v": 1})
    assert status(server, job_id)["status"] == "completed"

    with server.client("admin") as admin:
        # When the admin expires it, Then the cache no longer serves it
        answer = admin.post(f"/api/admin/jobs/{job_id}/expire")
        assert answer.status_code == 200 and answer.json()["expired"] == 1
        assert status(server, job_id)["status"] == "expired"
        # And it cannot be expired twice; an unknown job is a 404
        refused = admin.post(f"/api/admin/jobs/{job_id}/expire")
        assert refused.status_code == 409 and "only a completed job" in refused.json()["error"]
        assert_error(admin.post(f"/api/admin/jobs/{uuid.uuid4()}/expire"), 404)
        # And the submit key cannot
    with server.client("submit") as client:
        assert_error(client.post(f"/api/admin/jobs/{job_id}/expire"), 401)
    # And its next submit requeues it
    assert submit(server, "plain", params).json()["status"] == "pending"


def test_an_admin_expires_the_jobs_matching_filters(
    server: InProcessServer, runner_id: str
) -> None:
    job_type = f"bulk{uuid.uuid4().hex[:8]}"
    other = register(server, [job_type])
    done = []
    for version in ("bad", "bad", "good"):
        params = {"id": uuid.uuid4().hex}
        job_id = submit(server, job_type, params).json()["job_id"]
        complete(server, other, job_id, {"v": version}, cache_version=version)
        done.append((params, job_id))
    pending = submit(server, job_type, {"id": "pending"}).json()["job_id"]
    assert status(server, done[0][1])["status"] == "completed"  # kept in the result cache

    with server.client("admin") as admin:
        # An empty body, or only unknown filters, is refused and changes nothing
        for empty in ({}, {"status": "completed"}, {"job_type": None}):
            refused = admin.post("/api/admin/jobs/expire", json=empty)
            assert "at least one of" in assert_error(refused, 400)
        assert_error(admin.post("/api/admin/jobs/expire", json={"finished_before": -1}), 400)
        assert_error(admin.post("/api/admin/jobs/expire", json={"job_type": "a b"}), 400)
        # The filters combine: the two results of version "bad" of this type
        answer = admin.post(
            "/api/admin/jobs/expire", json={"job_type": job_type, "cache_version": "bad"}
        )
        assert answer.status_code == 200 and answer.json() == {"expired": 2}
        # finished_before: the rest of this type's completed results (the pending job stays)
        answer = admin.post(
            "/api/admin/jobs/expire",
            json={"job_type": job_type, "finished_before": int(time.time() * 1000) + 1000},
        )
        assert answer.json() == {"expired": 1}
    assert [status(server, job_id)["status"] for _, job_id in done] == ["expired"] * 3
    assert status(server, pending)["status"] == "pending"


# --- compute saved -------------------------------------------------------------------------


def test_cache_hits_count_the_compute_they_saved(server: InProcessServer, runner_id: str) -> None:
    # Given a job that ran about 0.3 s
    job_type = f"saved{uuid.uuid4().hex[:8]}"
    other = register(server, [job_type])
    params = {"id": uuid.uuid4().hex}
    job_id = submit(server, job_type, params).json()["job_id"]
    complete(server, other, job_id, {"v": 1}, run_s=0.3)
    with server.client("admin") as admin:
        detail = admin.get(f"/api/admin/jobs/{job_id}").json()
        before_s = admin.get("/api/admin/stats").json()["compute_saved_s"]
    run_s = (detail["finished_at"] - detail["claimed_at"]) / 1000
    assert run_s >= 0.3

    # When it is served: a submit from the table, a submit and a check from the result
    # cache, and a status (which is not a cache hit)
    assert submit(server, job_type, params).json()["status"] == "completed"
    assert submit(server, job_type, params).json()["status"] == "completed"
    assert check(server, job_type, params)["status"] == "completed"
    assert check(server, job_type, params)["status"] == "completed"
    assert status(server, job_id)["status"] == "completed"

    # Then each of the four hits added its run time, on /metrics and in the stats
    saved = scrape(server, job_type)["runpack_compute_saved_seconds_total"]
    assert saved == pytest.approx(4 * run_s)
    with server.client("admin") as admin:
        after_s = admin.get("/api/admin/stats").json()["compute_saved_s"]
    assert after_s - before_s == pytest.approx(4 * run_s)
