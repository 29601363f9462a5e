"""Group commit: concurrent single submits share writes, and each still gets its own answer
(201 for the one that created its job, its own error when its job alone fails)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from runpack_api.grouping import GroupCommit
from runpack_tasks.errors import SubmitContended
from runpack_tasks.jobstore import lifecycle
from tests.support import ApiServer, assert_error, stored_job, unique_params

SUBMITTERS = 48


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """The job types of each write of submits; the first write is held 0.3 s, so the
    submits arriving meanwhile queue behind it; a job of type ``contended`` fails."""
    made: list[list[str]] = []
    real = lifecycle.submit_many
    first = threading.Event()

    def recorded(engine: Engine, submissions: Any) -> Any:
        made.append([s.job_type for s in submissions])
        if not first.is_set():
            first.set()
            threading.Event().wait(0.3)
        if any(s.job_type == "contended" for s in submissions):
            raise SubmitContended("deleted while being submitted")
        return real(engine, submissions)

    monkeypatch.setattr(lifecycle, "submit_many", recorded)
    yield made


def submit_all(server: ApiServer, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    start = Barrier(len(bodies))
    limits = httpx.Limits(max_connections=len(bodies))

    def one(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
        start.wait()
        return client.post("/api/jobs/submit", json=body)

    with (
        server.client("submit", limits=limits) as client,
        ThreadPoolExecutor(len(bodies)) as pool,
    ):
        return list(pool.map(one, [client] * len(bodies), bodies))


def test_concurrent_new_submits_share_writes_and_each_gets_201(
    server: ApiServer, server_engine: Engine, writes: list[list[str]]
) -> None:
    bodies = [{"job_type": "grouped", "input_params": unique_params()} for _ in range(SUBMITTERS)]
    bodies += bodies[:4]  # four submitted twice at once
    answers = submit_all(server, bodies)
    codes = [answer.status_code for answer in answers]
    assert codes.count(201) == SUBMITTERS and codes.count(200) == 4, codes
    ids = [answer.json()["job_id"] for answer in answers]
    assert len(set(ids)) == SUBMITTERS
    assert ids[SUBMITTERS:] == ids[:4]
    for answer, body in zip(answers, bodies, strict=True):
        assert (
            stored_job(server_engine, answer.json()["job_id"])["input_params"]
            == (body["input_params"])
        )
    # fewer writes than submits: those that arrived during a write went in one together
    grouped = [write for write in writes if write == ["grouped"] * len(write)]
    assert sum(map(len, grouped)) == len(bodies)
    assert len(grouped) < len(bodies) / 2
    assert max(map(len, grouped)) > 1


def test_a_job_failing_in_a_group_fails_only_its_own_submit(
    server: ApiServer, writes: list[list[str]]
) -> None:
    bodies = [{"job_type": "grouped", "input_params": unique_params()} for _ in range(12)]
    bodies.insert(5, {"job_type": "contended", "input_params": unique_params()})
    answers = submit_all(server, bodies)
    assert "deleted while being submitted" in assert_error(answers[5], 503)
    assert [a.status_code for n, a in enumerate(answers) if n != 5] == [201] * 12
    assert any("contended" in write and len(write) > 1 for write in writes)


def test_a_submit_right_after_a_group_finished_is_still_written() -> None:
    # a writer that just emptied the queue must not be counted as one that will drain it
    written: list[list[int]] = []

    def store(items: list[int]) -> list[int]:
        written.append(items)
        return [item * 10 for item in items]

    async def one_after_another() -> list[int]:
        group: GroupCommit[int, int] = GroupCommit(store, max_writers=1)
        return [await asyncio.wait_for(group.submit(n), 5) for n in range(5)]

    assert asyncio.run(one_after_another()) == [0, 10, 20, 30, 40]
    assert written == [[0], [1], [2], [3], [4]]
