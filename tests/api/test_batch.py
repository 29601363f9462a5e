"""POST /api/jobs/submit-batch: answers in order, as single submits would give them, in one
write; one bad job refuses the batch and nothing changes."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from runpack_api import operations
from runpack_api.schemas import BatchResponse
from runpack_api.validity import Verdict
from runpack_tasks.jobstore.hashing import job_hash
from runpack_tasks.jobstore.models import JOBS
from tests.support import (
    ApiServer,
    Backend,
    assert_error,
    nothing_changes,
    register,
    serving_in_process,
    submit,
    unique_params,
)

BATCH = "/api/jobs/submit-batch"
#: Every key an answer of a batch may carry: a single submit's, and ``created``.
ITEM_KEYS = {"job_id", "status", "message", "result", "served", "created"}


def job(job_type: str = "bulk", **params: Any) -> dict[str, Any]:
    return {"job_type": job_type, "input_params": unique_params(**params)}


def batch(server: ApiServer, jobs: list[Any]) -> httpx.Response:
    with server.client("submit") as client:
        return client.post(BATCH, json={"jobs": jobs})


def results(answer: httpx.Response) -> list[dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert list(body) == ["results"]
    items: list[dict[str, Any]] = body["results"]
    assert all(set(item) <= ITEM_KEYS and isinstance(item["created"], bool) for item in items)
    BatchResponse.model_validate(body)  # the shape /docs declares
    return items


def stored_hashes(engine: Engine, jobs: list[dict[str, Any]]) -> int:
    digests = [job_hash(j["job_type"], j["input_params"]) for j in jobs]
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(JOBS).where(JOBS.c.job_hash.in_(digests))
        ).scalar_one()


def finish(server: ApiServer, job_type: str, job_id: str, outcome: str) -> None:
    """Have a runner claim the job and complete or fail it."""
    runner_id = register(server, [job_type])
    with server.client("runner", runner_id) as runner:
        assert runner.post(f"/api/runner/jobs/{job_id}/claim").status_code == 200
        if outcome == "complete":
            report = runner.post(
                f"/api/runner/jobs/{job_id}/complete", json={"output_data": {"v": 1}}
            )
        else:
            report = runner.post(f"/api/runner/jobs/{job_id}/error", json={"error_message": "x"})
        assert report.status_code == 200, report.text


def test_new_jobs_are_created_in_order_with_the_answers_of_single_submits(
    server: ApiServer, server_engine: Engine
) -> None:
    jobs = [job(n=n) for n in range(5)]
    items = results(batch(server, jobs))
    assert [item["created"] for item in items] == [True] * 5
    assert [item["status"] for item in items] == ["pending"] * 5
    assert len({item["job_id"] for item in items}) == 5
    assert stored_hashes(server_engine, jobs) == 5
    # each job is the one a single submit of it finds, and its answer has the same shape
    for original, item in zip(jobs, items, strict=True):
        single = submit(server, original["job_type"], original["input_params"])
        assert single.status_code == 200
        assert single.json()["job_id"] == item["job_id"]
        assert set(single.json()) | {"created"} == set(item) | {"message"}
        assert item["message"].startswith("Job created and queued")


def test_identical_jobs_in_one_batch_get_one_job(server: ApiServer, server_engine: Engine) -> None:
    same = job()
    items = results(batch(server, [same, job(), same, same]))
    assert items[0]["job_id"] == items[2]["job_id"] == items[3]["job_id"] != items[1]["job_id"]
    # the first created it; the repeats are answered as a submit right after it would be
    assert [item["created"] for item in items] == [True, True, False, False]
    assert items[2]["message"].startswith("Job is already queued")
    assert stored_hashes(server_engine, [same]) == 1


def test_existing_completed_and_failed_jobs_are_answered_as_single_submits(
    server: ApiServer,
) -> None:
    # Given a pending, a completed and a failed job
    pending, completed, failed = job("states"), job("states"), job("states")
    ids = [
        submit(server, j["job_type"], j["input_params"]).json()["job_id"]
        for j in (pending, completed, failed)
    ]
    finish(server, "states", ids[1], "complete")
    finish(server, "states", ids[2], "fail")
    # When a batch holds them and a new one
    new = job("states")
    items = results(batch(server, [pending, completed, failed, new]))
    # Then the pending is as it was, the completed comes with its result, the failed is
    # requeued, the new is created; every existing one keeps its id
    assert [item["job_id"] for item in items[:3]] == ids
    assert [item["status"] for item in items] == ["pending", "completed", "pending", "pending"]
    assert [item["created"] for item in items] == [False, False, False, True]
    assert items[1]["result"]["output_data"] == {"v": 1}
    assert items[2]["message"].startswith("Job had failed; requeued")
    # and the completed answer, now cached, is served again the same way, and is the
    # single submit's answer with ``created`` added
    again = results(batch(server, [completed, completed]))
    assert again == [items[1], items[1]]
    single = submit(server, completed["job_type"], completed["input_params"]).json()
    assert {**single, "created": False} == items[1]


def test_a_stored_result_judged_unservable_is_expired_and_requeued(
    server: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two completed jobs whose results the submit paths then judge unservable
    done = [job("stale"), job("stale")]
    ids = [submit(server, j["job_type"], j["input_params"]).json()["job_id"] for j in done]
    for job_id in ids:
        finish(server, "stale", job_id, "complete")

    async def never(_runtime: object, _job: object) -> Verdict:
        return Verdict(False, "judged invalid")

    monkeypatch.setattr(operations, "judge", never)
    # When one is submitted alone and the other in a batch
    single = submit(server, done[0]["job_type"], done[0]["input_params"])
    items = results(batch(server, [done[1], done[1]]))
    # Then both are requeued under their ids (the batch's repeat finds it queued)
    assert single.status_code == 200 and single.json()["status"] == "pending"
    assert single.json()["job_id"] == ids[0]
    assert [item["status"] for item in items] == ["pending", "pending"]
    assert [item["job_id"] for item in items] == [ids[1], ids[1]]
    assert items[0]["message"].startswith("Job's cached result expired")
    assert items[1]["message"].startswith("Job is already queued")


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ({"job_type": "bad type!", "input_params": {}}, "jobs[2]: job_type"),
        ({"job_type": "bulk"}, "jobs[2]: missing field: input_params"),
        ({"job_type": "bulk", "input_params": []}, "jobs[2]: input_params"),
        ("not a job", "jobs[2]"),
        ({"job_type": "hello_world", "input_params": {"processing_time": 1000}}, "jobs[2]: "),
    ],
)
def test_one_bad_job_refuses_the_batch_naming_it_and_nothing_is_created(
    server: ApiServer, server_engine: Engine, bad: Any, said: str
) -> None:
    good = [job(), job(), job()]
    with nothing_changes(server_engine):
        message = assert_error(batch(server, [good[0], good[1], bad, good[2]]), 400)
    assert message.startswith(said), message
    assert stored_hashes(server_engine, good) == 0


@pytest.mark.parametrize(
    "body", [{}, {"jobs": []}, {"jobs": {"job_type": "x"}}, [job()], {"jobs": None}]
)
def test_a_body_that_is_not_a_list_of_jobs_is_refused(
    server: ApiServer, server_engine: Engine, body: Any
) -> None:
    with server.client("submit") as client, nothing_changes(server_engine):
        assert "jobs" in assert_error(client.post(BATCH, json=body), 400)


def test_the_batch_needs_the_submit_key(server: ApiServer, server_engine: Engine) -> None:
    for role in (None, "runner"):
        with server.client(role) as client, nothing_changes(server_engine):
            assert_error(client.post(BATCH, json={"jobs": [job()]}), 401)


MAX_JOBS = 3
MAX_BYTES = 2000


@pytest.fixture(scope="module")
def limited(
    backend: Backend, module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    extra = {
        "RUNPACK_MAX_BATCH_JOBS": str(MAX_JOBS),
        "RUNPACK_MAX_BATCH_BYTES": str(MAX_BYTES),
        "RUNPACK_MAX_INPUT_BYTES": "300",
        "RUNPACK_RATE_BATCH": "3/minute",
    }
    with serving_in_process(
        module_database_url, backend, tmp_path_factory.mktemp("batch"), extra
    ) as server:
        yield server


def test_batch_limits_size_and_rate(limited: ApiServer, server_engine: Engine) -> None:
    # (a source no earlier run used: counters live a minute in the shared Redis)
    source = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    with limited.client("submit", source=source) as client:
        with nothing_changes(server_engine):
            # too many jobs
            too_many = client.post(BATCH, json={"jobs": [job() for _ in range(MAX_JOBS + 1)]})
            assert f"1 to {MAX_JOBS} jobs" in assert_error(too_many, 400)
            # a body over RUNPACK_MAX_BATCH_BYTES
            big = {"jobs": [job(pad="x" * 250) for _ in range(MAX_JOBS)] * 3}
            assert str(MAX_BYTES) in assert_error(client.post(BATCH, json=big), 413)
            # one job over the parameter limit of a single submit: its index and limit
            over = client.post(BATCH, json={"jobs": [job(), job(pad="x" * 400)]})
            assert assert_error(over, 413).startswith("jobs[1]: input_params is")
        # (the refusals that reached the route counted: two of the three requests)
        # a batch of the largest size counts as one request of RUNPACK_RATE_BATCH
        assert client.post(BATCH, json={"jobs": [job() for _ in range(MAX_JOBS)]}).is_success
        refused = client.post(BATCH, json={"jobs": [job()]})
    assert "rate limit" in assert_error(refused, 429)
    assert int(refused.headers["Retry-After"]) >= 1
    # single submits draw from their own budget
    assert submit(limited, "bulk", unique_params()).status_code == 201


def test_docs_describe_the_batch(server: ApiServer) -> None:
    with server.client() as client:
        spec = client.get("/openapi.json").json()
    operation = spec["paths"][BATCH]["post"]
    assert "requestBody" in operation and {"200", "400", "413"} <= set(operation["responses"])


def test_status_batch_refuses_what_is_not_a_list_of_ids(limited: ApiServer) -> None:
    with limited.client("submit") as client:
        for body in ({}, {"job_ids": "x"}, {"job_ids": [1]}, {"job_ids": ["a\x00"]}):
            assert_error(client.post("/api/jobs/status-batch", json=body), 400)
        too_many = client.post("/api/jobs/status-batch", json={"job_ids": ["a"] * (MAX_JOBS + 1)})
        assert f"1 to {MAX_JOBS} ids" in assert_error(too_many, 400)
        none = client.post("/api/jobs/status-batch", json={"job_ids": []})
        assert_error(none, 400)
        unknown = client.post("/api/jobs/status-batch", json={"job_ids": ["nope"]})
    assert unknown.status_code == 200 and unknown.json() == {"results": [None]}
