"""Group commit: concurrent single submits of one API process share one write.

A new-job submit costs one committed INSERT, and under load the requests of one process
wait on each other's writes anyway: on SQLite behind the database's one write lock, on
PostgreSQL for the pool's connections and the WAL flush of each commit. Here a request
hands its job to ``GroupCommit`` and awaits its answer; a writer takes everything queued
and stores it with one call of the ``store`` function, a multi-row write in a worker
thread, while the jobs arriving meanwhile queue for the next write. At most
``max_writers`` writes run at once. Nothing waits on purpose: a lone submit is written at
once, and the busier the process, the larger the groups.

``store`` answers each item in order, or with the exception that item raised: a group
that fails as a whole is stored again item by item (``store_each``), so an error reaches
only the request it belongs to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from starlette.concurrency import run_in_threadpool

from runpack_tasks.write_group import MAX_GROUP, store_each

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    """Items submitted by concurrent requests, stored in groups by ``store`` (run in a
    worker thread); every caller gets its own item's answer."""

    def __init__(
        self,
        store: Callable[[list[Item]], list[Result]],
        *,
        max_writers: int = 1,
    ) -> None:
        self._store = store
        self._max_writers = max_writers
        self._queued: list[tuple[Item, asyncio.Future[Result]]] = []
        #: Writers running: counted down by the writer itself the moment it finds the
        #: queue empty (not by a done callback, which runs later: a submit in between
        #: would count a writer that will never look at the queue again).
        self._writing = 0
        self._tasks: set[asyncio.Task[None]] = set()  # referenced while they run

    async def submit(self, item: Item) -> Result:
        """Store ``item`` with whatever else is queued; its answer, or its exception."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queued.append((item, future))
        if self._writing < self._max_writers:
            self._writing += 1
            task = asyncio.ensure_future(self._write())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _write(self) -> None:
        try:
            await self._drain()
        finally:
            self._writing -= 1

    async def _drain(self) -> None:
        while self._queued:
            group, self._queued = self._queued[:MAX_GROUP], self._queued[MAX_GROUP:]
            try:
                answers = await run_in_threadpool(
                    store_each, self._store, [item for item, _ in group]
                )
            except BaseException:  # this task was cancelled: so are the requests it served
                for _, future in group:
                    future.cancel()
                raise
            for (_, future), answer in zip(group, answers, strict=True):
                if future.done():  # the request was cancelled (its client went away)
                    continue
                if isinstance(answer, Exception):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)
