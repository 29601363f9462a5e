"""Group commit: concurrent single submits share writes, and each still gets its own answer
(201 for the one that created its job, its own error when its job alone fails)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from runpack_api.grouping import GroupCommit
from runpack_tasks.errors import SubmitContended
from runpack_tasks.jobstore import lifecycle
from tests.support import ApiServer, assert_error, stored_job, unique_params, wait_for

SUBMITTERS = 48


@dataclass
class Writes:
    """The job types of each write of submits, the group commits submits reached, and the
    gate every write waits at until the test opens it."""

    made: list[list[str]] = field(default_factory=list)
    commits: set[GroupCommit[Any, Any]] = field(default_factory=set)
    gate: threading.Event = field(default_factory=threading.Event)

    def queued_or_written(self) -> int:
        """Submits in a write, or queued for one (a writer thread may take them any time)."""
        return sum(map(len, self.made)) + sum(len(commit._queued) for commit in self.commits)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Writes]:
    """Writes held until the test opens the gate, so submits queue behind them; a job of
    type ``contended`` fails."""
    held = Writes()
    real_store, real_submit = lifecycle.submit_many, GroupCommit.submit

    def recorded(engine: Engine, submissions: Any) -> Any:
        held.made.append([s.job_type for s in submissions])
        if not held.gate.wait(30):
            raise RuntimeError("the test never opened the gate")
        if any(s.job_type == "contended" for s in submissions):
            raise SubmitContended("deleted while being submitted")
        return real_store(engine, submissions)

    async def counted(self: GroupCommit[Any, Any], item: Any) -> Any:
        held.commits.add(self)
        return await real_submit(self, item)

    monkeypatch.setattr(lifecycle, "submit_many", recorded)
    monkeypatch.setattr(GroupCommit, "submit", counted)
    yield held
    held.gate.set()


@contextmanager
def sending(server: ApiServer, bodies: list[dict[str, Any]]) -> Iterator[list[Future[Any]]]:
    """The submits of ``bodies``, sent at once from threads; their answers to come."""
    limits = httpx.Limits(max_connections=len(bodies))
    with (
        server.client("submit", limits=limits) as client,
        ThreadPoolExecutor(len(bodies)) as pool,
    ):
        yield [pool.submit(client.post, "/api/jobs/submit", json=body) for body in bodies]


def queued(writes: Writes, count: int) -> None:
    wait_for(
        lambda: writes.queued_or_written() >= count, timeout_s=30, what=f"{count} queued submits"
    )


def test_concurrent_new_submits_share_writes_and_each_gets_201(
    server: ApiServer, server_engine: Engine, writes: Writes
) -> None:
    bodies = [{"job_type": "grouped", "input_params": unique_params()} for _ in range(SUBMITTERS)]
    bodies += bodies[:4]  # four submitted twice at once
    with sending(server, bodies) as pending:
        queued(writes, len(bodies))
        writes.gate.set()
        answers = [future.result(timeout=30) for future in pending]
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
    grouped = [write for write in writes.made if write == ["grouped"] * len(write)]
    assert sum(map(len, grouped)) == len(bodies)
    assert len(grouped) < len(bodies) / 2
    assert max(map(len, grouped)) > 1


def test_a_job_failing_in_a_group_fails_only_its_own_submit(
    server: ApiServer, writes: Writes
) -> None:
    def grouped() -> dict[str, Any]:
        return {"job_type": "grouped", "input_params": unique_params()}

    held: list[dict[str, Any]] = []
    first: list[Future[Any]] = []
    with ExitStack() as stack:

        def hold_one() -> None:
            """A submit of its own, sent once the one before is held, held by a writer."""
            held.append(grouped())
            first.extend(stack.enter_context(sending(server, held[-1:])))
            wait_for(lambda: len(writes.made) == len(held), timeout_s=30, what="a held write")

        # every writer holds a write of one submit,
        hold_one()
        (commit,) = writes.commits
        while len(held) < commit._max_writers:
            hold_one()
        # so that the contended submit queues with others for the next write
        behind = [grouped() for _ in range(8)]
        contended = {"job_type": "contended", "input_params": unique_params()}
        last = stack.enter_context(sending(server, [*behind, contended]))
        queued(writes, len(held) + len(behind) + 1)
        writes.gate.set()
        answers = [future.result(timeout=30) for future in first + last]
    assert "deleted while being submitted" in assert_error(answers[-1], 503)
    assert [a.status_code for a in answers[:-1]] == [201] * (len(held) + len(behind))
    # its group failed as a whole, and was written again one by one
    assert [sorted(w) for w in writes.made if "contended" in w] == [
        ["contended", *["grouped"] * len(behind)],
        ["contended"],
    ]


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


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait (on the event loop) until ``condition`` holds; fail after 10 s."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def test_writes_run_in_at_most_max_writers_threads_which_close_stops() -> None:
    # Given a store that holds every write at a gate, counting the writes running at once
    running, most, lock, gate = 0, 0, threading.Lock(), threading.Event()

    def store(items: list[int]) -> list[int]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        gate.wait(10)
        with lock:
            running -= 1
        return items

    group: GroupCommit[int, int] = GroupCommit(store, max_writers=2)
    before = set(threading.enumerate())

    async def many() -> list[int]:
        # When one submit is being written, then ten more, then 189 while both writes hold
        first = asyncio.ensure_future(group.submit(0))
        await _until(lambda: running == 1, "the first write")
        second = [asyncio.ensure_future(group.submit(n)) for n in range(1, 11)]
        await _until(lambda: running == 2, "the second write")
        rest = [asyncio.ensure_future(group.submit(n)) for n in range(11, 200)]
        await asyncio.sleep(0.05)  # a third writer, if any, would have started by now
        gate.set()
        return list(await asyncio.gather(first, *second, *rest))

    assert asyncio.run(many()) == list(range(200))
    threads = [t for t in set(threading.enumerate()) - before if t.name == "runpack-group-commit"]
    group.close()
    # Then two writes ran at once, never more, in two threads, which closing stopped
    assert most == 2
    assert len(threads) == 2
    assert not any(thread.is_alive() for thread in threads)


def test_a_cancelled_submit_leaves_the_others_answered() -> None:
    gate = threading.Event()

    def store(items: list[int]) -> list[int]:
        gate.wait(10)
        return [item + 1 for item in items]

    group: GroupCommit[int, int] = GroupCommit(store)

    async def one_cancelled() -> list[int]:
        first = asyncio.ensure_future(group.submit(1))
        queued = [asyncio.ensure_future(group.submit(n)) for n in (2, 3, 4)]
        await asyncio.sleep(0)  # every submit is queued
        queued[1].cancel()
        gate.set()
        return [await first, await queued[0], await queued[2]]

    try:
        assert asyncio.run(one_cancelled()) == [2, 3, 5]
    finally:
        group.close()
