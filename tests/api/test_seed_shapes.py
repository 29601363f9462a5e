"""The shapes the seed's web UI and runner rely on: batch-delete's ``failed`` ids, fractional
heartbeat progress, and the paged runner list (API and ``runpack runners``)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from runpack_tasks.jobstore.models import JOBS, RUNNERS
from tests.support import ApiServer, unique_params

JOB_TYPE = "shapes_test"
MANY = 120
#: A job's columns a refused heartbeat must leave as they were.
REPORTED = ("status", "progress_current", "progress_total", "console_output", "last_heartbeat")


def assert_error(answer: httpx.Response, status: int) -> None:
    """The answer has ``status`` and the one error body."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"], body


def register(server: ApiServer, name: str) -> str:
    with server.client("runner") as client:
        answer = client.post(
            "/api/runner/register", json={"name": name, "capabilities": [JOB_TYPE]}
        )
    assert answer.status_code == 201, answer.text
    runner_id: str = answer.json()["runner_id"]
    return runner_id


def submitted_job(server: ApiServer) -> str:
    with server.client("submit") as client:
        answer = client.post(
            "/api/jobs/submit", json={"job_type": JOB_TYPE, "input_params": unique_params()}
        )
    assert answer.status_code == 201, answer.text
    job_id: str = answer.json()["job_id"]
    return job_id


def claimed_job(server: ApiServer) -> tuple[str, str]:
    """(job id, runner id): a new job claimed by a new runner."""
    job_id, runner_id = submitted_job(server), register(server, "claimer")
    with server.client("runner", runner_id) as runner:
        assert runner.post(f"/api/runner/jobs/{job_id}/claim").status_code == 200
    return job_id, runner_id


def reported(engine: Engine, job_id: str) -> tuple[Any, ...]:
    with engine.connect() as conn:
        columns = [JOBS.c[name] for name in REPORTED]
        return tuple(conn.execute(sa.select(*columns).where(JOBS.c.id == job_id)).one())


def job_ids_stored(engine: Engine, job_ids: list[str]) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(sa.select(JOBS.c.id).where(JOBS.c.id.in_(job_ids))))


# --- batch delete ---------------------------------------------------------------------------


def test_batch_delete_counts_the_deleted_and_lists_the_ids_of_no_job(
    server: ApiServer, server_engine: Engine
) -> None:
    # Given two jobs and an id of no job
    first, second = submitted_job(server), submitted_job(server)
    unknown = str(uuid.uuid4())

    # When the admin deletes all three (one of them named twice)
    with server.client("admin") as admin:
        answer = admin.post(
            "/api/admin/jobs/batch-delete", json={"job_ids": [first, unknown, second, first]}
        )

    # Then the two jobs are gone, and the answer counts them and names the unknown id
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"success", "deleted", "failed", "message"}
    assert (body["success"], body["deleted"], body["failed"]) == (True, 2, [unknown])
    assert job_ids_stored(server_engine, [first, second]) == set()


# --- heartbeat progress ---------------------------------------------------------------------


def status_progress(server: ApiServer, job_id: str) -> Any:
    with server.client("submit") as client:
        return client.get(f"/api/jobs/{job_id}").json()["progress"]


def test_fractional_and_whole_progress_come_back_as_sent(server: ApiServer) -> None:
    # Given a claimed job
    job_id, runner_id = claimed_job(server)

    with server.client("runner", runner_id) as runner:
        # When its runner reports fractional progress
        beat = runner.post(
            f"/api/runner/jobs/{job_id}/heartbeat",
            json={"progress_current": 0.5, "progress_total": 1.0},
        )
        assert beat.status_code == 200, beat.text

        # Then the status and the admin's detail show it
        assert status_progress(server, job_id) == {"current": 0.5, "total": 1.0}
        with server.client("admin") as admin:
            detail = admin.get(f"/api/admin/jobs/{job_id}").json()
        assert detail["progress"] == {"current": 0.5, "total": 1.0}

        # And whole numbers, as the seed's runner sends them, come back as integers
        beat = runner.post(
            f"/api/runner/jobs/{job_id}/heartbeat",
            json={"progress_current": 3, "progress_total": 10},
        )
        assert beat.status_code == 200, beat.text
        progress = status_progress(server, job_id)
        assert progress == {"current": 3, "total": 10}
        assert all(type(value) is int for value in progress.values())

        # And null keeps what is stored
        beat = runner.post(f"/api/runner/jobs/{job_id}/heartbeat", json={"progress_current": None})
        assert beat.status_code == 200, beat.text
        assert status_progress(server, job_id) == {"current": 3, "total": 10}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"progress_current": -1}', id="negative"),
        pytest.param(b'{"progress_total": -0.5}', id="negative-fraction"),
        pytest.param(b'{"progress_current": "0.5"}', id="string"),
        pytest.param(b'{"progress_current": "NaN"}', id="string-nan"),
        pytest.param(b'{"progress_current": NaN}', id="bare-nan"),
        pytest.param(b'{"progress_current": Infinity}', id="bare-infinity"),
        # a run of digits this long makes the body read by the exact parser, which knows NaN
        pytest.param(
            b'{"progress_current": NaN, "progress_total": 100000000000000000000}',
            id="nan-beside-a-long-number",
        ),
        pytest.param(b'{"progress_current": 1e400}', id="overflowing"),
        pytest.param(b'{"progress_total": 1e300}', id="huge"),
        pytest.param(f'{{"progress_total": {2**53}}}'.encode(), id="2**53"),
        pytest.param(b'{"progress_current": true}', id="bool"),
        pytest.param(b'{"progress_current": [1]}', id="list"),
        pytest.param(b'{"progress_current": {"of": 1}}', id="object"),
    ],
)
def test_bad_progress_is_refused_and_changes_nothing(
    server: ApiServer, server_engine: Engine, body: bytes
) -> None:
    # Given a job with progress reported
    job_id, runner_id = claimed_job(server)
    with server.client("runner", runner_id) as runner:
        beat = runner.post(
            f"/api/runner/jobs/{job_id}/heartbeat",
            json={"progress_current": 1, "progress_total": 4, "console_output": "before"},
        )
        assert beat.status_code == 200, beat.text
        before = reported(server_engine, job_id)

        # When its runner sends progress that is not a finite number from 0 to 2**53-1
        answer = runner.post(
            f"/api/runner/jobs/{job_id}/heartbeat",
            content=body,
            headers={"Content-Type": "application/json"},
        )

    # Then it is refused with 400 and the job is as it was
    assert_error(answer, 400)
    assert reported(server_engine, job_id) == before


# --- the runner list ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def many_runners(server: ApiServer) -> set[str]:
    """Ids of runners registered for the listing tests."""
    prefix = uuid.uuid4().hex[:8]
    return {register(server, f"many-{prefix}-{n}") for n in range(MANY)}


def runner_page(server: ApiServer, **params: Any) -> httpx.Response:
    with server.client("admin") as admin:
        return admin.get("/api/admin/runners", params=params)


def all_pages(server: ApiServer, limit: int) -> tuple[list[dict[str, Any]], set[int]]:
    """Every runner, fetched ``limit`` at a time, and the totals the pages answered."""
    listed: list[dict[str, Any]] = []
    totals: set[int] = set()
    offset = 0
    while True:
        answer = runner_page(server, limit=limit, offset=offset)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert (page["limit"], page["offset"]) == (limit, offset)
        assert len(page["runners"]) <= limit
        listed += page["runners"]
        totals.add(page["total"])
        if not page["runners"]:
            return listed, totals
        offset += limit


def test_runner_list_pages_through_every_runner_in_a_stable_order(
    server: ApiServer, server_engine: Engine, many_runners: set[str]
) -> None:
    # Given over a hundred runners (and a claimed job)
    job_id, claimer = claimed_job(server)
    with server_engine.connect() as conn:
        stored = conn.scalar(sa.select(sa.func.count()).select_from(RUNNERS))

    # When the admin pages through them, twice
    listed, totals = all_pages(server, limit=50)
    again, _ = all_pages(server, limit=50)

    # Then the pages hold every runner once, most recently seen first, the same both times
    assert totals == {stored} and len(listed) == stored > MANY
    ids = [runner["runner_id"] for runner in listed]
    assert len(set(ids)) == len(ids) and many_runners <= set(ids)
    assert [r["runner_id"] for r in again] == ids
    order = [(-runner["last_seen"], runner["runner_id"]) for runner in listed]
    assert order == sorted(order)

    # And every entry keeps the seed's fields, with the job a runner is running
    seed_fields = {"runner_id", "name", "capabilities", "last_seen", "is_active"}
    assert all(seed_fields <= set(runner) for runner in listed)
    assert {r["runner_id"]: r["current_job"] for r in listed}[claimer] == job_id

    # And without parameters the first hundred are answered
    first = runner_page(server).json()
    assert (first["limit"], first["offset"], first["total"]) == (100, 0, stored)
    assert [runner["runner_id"] for runner in first["runners"]] == ids[:100]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 501},
        {"limit": -1},
        {"limit": "ten"},
        {"limit": 1.5},
        {"offset": -1},
        {"offset": 2**53},
        {"offset": "next"},
    ],
    ids=repr,
)
def test_runner_list_refuses_a_bad_limit_or_offset(
    server: ApiServer, params: dict[str, Any]
) -> None:
    assert_error(runner_page(server, **params), 400)


def test_runpack_runners_shows_the_first_page_and_how_many_more(
    server: ApiServer, live_server: ApiServer, many_runners: set[str]
) -> None:
    # Given over a hundred runners
    total = runner_page(server).json()["total"]
    assert total > 100

    # When `runpack runners` lists them (from a real API process on the same database)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPACK_")}
    key, url = live_server.keys.admin, live_server.url
    shown = subprocess.run(
        [sys.executable, "-m", "runpack_api.cli", "runners", "--url", url, "--key", key],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout

    # Then it shows the first hundred and says how many more there are
    assert f"100 of {total} runners" in shown
    assert f"{total - 100} more runners not shown" in shown
