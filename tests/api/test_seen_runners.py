"""The runners an API process knows: a known runner's request costs no query, when it was
heard from is written in one flush, and stops and deletions made elsewhere are honoured."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine, event

from runpack_api.seen_runners import SeenRunners
from runpack_tasks.jobstore import queries, runners
from runpack_tasks.jobstore.models import RUNNERS


@contextlib.contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements run on ``engine`` inside the block."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def stored(engine: Engine, runner_id: str) -> Any:
    row = queries.runner_by_id(engine, runner_id)
    assert row is not None
    return row


async def heard(seen: SeenRunners, runner_id: str) -> Any:
    row = await seen.get(runner_id)
    assert row is not None
    return row


def set_back(engine: Engine, runner_id: str, ms: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.update(RUNNERS)
            .where(RUNNERS.c.id == runner_id)
            .values(last_seen=RUNNERS.c.last_seen - ms)
        )


def test_a_known_runner_costs_no_query_and_is_recorded_at_the_flush(engine: Engine) -> None:
    async def scenario() -> None:
        # Given a runner this process has read once
        runner_id = runners.register(engine, "r1", ["a"])
        seen = SeenRunners(engine)
        assert (await heard(seen, runner_id)).name == "r1"
        set_back(engine, runner_id, 60_000)
        before = stored(engine, runner_id).last_seen
        # When it makes more requests
        with statements(engine) as ran:
            for _ in range(5):
                assert (await heard(seen, runner_id)).capabilities == ["a"]
        # Then none of them queried the table, and last_seen is written by the flush
        assert ran == []
        assert seen.unwritten == 1
        await seen.flush()
        after = stored(engine, runner_id).last_seen
        assert after >= before + 60_000 and seen.unwritten == 0

    asyncio.run(scenario())


def test_a_stop_stands_against_older_notes_and_is_cleared_by_newer_ones(engine: Engine) -> None:
    async def scenario() -> None:
        runner_id = runners.register(engine, "r2", ["a"])
        seen = SeenRunners(engine)
        await seen.get(runner_id)
        # Given a request heard here, then a stop received by another API process
        await seen.get(runner_id)
        await asyncio.sleep(0.01)
        runners.stop(engine, runner_id)
        # When the note of the earlier request is written, the runner stays stopped
        await seen.flush()
        assert stored(engine, runner_id).stopped_at is not None
        # And a request heard after the stop makes it running again
        await asyncio.sleep(0.01)
        await seen.get(runner_id)
        await seen.flush()
        assert stored(engine, runner_id).stopped_at is None

    asyncio.run(scenario())


def test_a_deleted_runner_is_forgotten_at_the_flush(engine: Engine) -> None:
    async def scenario() -> None:
        runner_id = runners.register(engine, "r3", ["a"])
        seen = SeenRunners(engine)
        await seen.get(runner_id)
        # Given a known runner deleted meanwhile (retention, in another process)
        with engine.begin() as conn:
            conn.execute(sa.delete(RUNNERS).where(RUNNERS.c.id == runner_id))
        await seen.get(runner_id)
        # When its note is flushed, it is forgotten: its next request finds no runner
        await seen.flush()
        assert await seen.get(runner_id) is None
        assert await seen.get("never-registered") is None

    asyncio.run(scenario())


def test_a_runner_stopped_here_is_read_again_at_its_next_request(engine: Engine) -> None:
    async def scenario() -> None:
        runner_id = runners.register(engine, "r4", ["a"])
        seen = SeenRunners(engine)
        await seen.get(runner_id)
        seen.forget(runner_id)
        runners.stop(engine, runner_id)
        # When it speaks again through this process, it is running again at once
        await asyncio.sleep(0.01)
        assert (await heard(seen, runner_id)).stopped_at is None
        assert stored(engine, runner_id).stopped_at is None

    asyncio.run(scenario())
