"""Waking long-polling runners when jobs become pending, in this process and all others.

Each waiting long poll registers the job types it asks for. A job that becomes pending
here wakes one waiter of its type here and is announced to the other API processes
(``runpack_tasks.wakeups``), where a listener thread wakes one waiter of that type each:
a new job wakes a handful of runners across the deployment, not every one of them. Woken
waiters read the table; the others keep waiting and cost no query.

Announcements can be lost (a listener reconnecting, a path that made a job pending without
announcing it), so one safety-net task per process looks every ``wakeup_poll_s`` for
pending jobs of the types its waiters ask for, in one query, and wakes those waiters.
What it finds empty stays known empty until the next wake-up of any kind: a runner that
starts a new long poll for those types meanwhile waits without reading the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from runpack_tasks.jobstore import queries
from runpack_tasks.wakeups import Wakeups

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Watch:
    """One registered long poll."""

    future: asyncio.Future[None]

    async def wait(self, timeout_s: float) -> bool:
        """Wait until woken (True) or ``timeout_s`` passed (False)."""
        try:
            await asyncio.wait_for(asyncio.shield(self.future), timeout_s)
        except TimeoutError:
            return False
        return True


class PendingSignal:
    """The long polls of one API process waiting for pending jobs, and what wakes them."""

    def __init__(self, wakeups: Wakeups | None = None, poll_s: float = 5.0) -> None:
        self.wakeups = wakeups or Wakeups()
        self._poll_s = poll_s
        #: Waiting long polls (oldest first) and the job types each asks for.
        self._waiters: dict[asyncio.Future[None], frozenset[str]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._safety_net: asyncio.Task[None] | None = None
        #: Counts wake-ups of any kind: a reading of the table taken while it changed is stale.
        self._epoch = 0
        #: The last safety-net reading with nothing pending: (epoch, when, its job types).
        self._quiet: tuple[int, float, frozenset[str]] | None = None

    def start(self, engine: Engine) -> None:
        """Listen to the other processes and start the safety-net poll (on the running loop)."""
        if self._loop is not None:
            return
        loop = self._loop = asyncio.get_running_loop()

        def deliver(job_type: str | None, count: int) -> None:
            loop.call_soon_threadsafe(self.wake, job_type, count)

        self.wakeups.listen(deliver)
        self._safety_net = loop.create_task(self._poll(engine))

    def notify(self, job_type: str | None = None, count: int = 1) -> None:
        """``count`` jobs of ``job_type`` (None: of any type) just became pending here."""
        self.wake(job_type, count)
        self.wakeups.publish(job_type, count)

    def wake(self, job_type: str | None, count: int = 1) -> int:
        """Wake up to ``count`` waiters (0: all) asking for ``job_type`` (None: any), oldest
        first; returns how many were woken."""
        self._epoch += 1
        woken = 0
        for future, job_types in list(self._waiters.items()):
            if count and woken >= count:
                break
            if job_type is None or job_type in job_types:
                del self._waiters[future]
                if not future.done():
                    future.set_result(None)
                    woken += 1
        return woken

    @property
    def waiting(self) -> int:
        """How many long polls are waiting here."""
        return len(self._waiters)

    def known_empty(self, job_types: list[str]) -> bool:
        """Whether none of ``job_types`` can have a pending job: the last safety-net reading
        (less than two rounds old) found none, and no wake-up came since. A new long poll
        then starts waiting without reading the table."""
        if self._quiet is None:
            return False
        epoch, read_at, empty = self._quiet
        return (
            epoch == self._epoch
            and time.monotonic() - read_at < 2 * self._poll_s
            and empty.issuperset(job_types)
        )

    @contextlib.contextmanager
    def watching(self, job_types: list[str]) -> Iterator[Watch]:
        """Register a long poll for ``job_types`` for the block's duration. Register before
        reading the table: a job made pending during the read then still wakes it."""
        watch = Watch(asyncio.get_running_loop().create_future())
        self._waiters[watch.future] = frozenset(job_types)
        try:
            yield watch
        finally:
            self._waiters.pop(watch.future, None)

    async def _poll(self, engine: Engine) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            asked = sorted(set().union(*self._waiters.values()))
            if not asked:
                continue
            epoch = self._epoch
            try:
                pending = await run_in_threadpool(queries.pending_types, engine, asked)
            except Exception as exc:  # the database may come back; the next round retries
                self._quiet = None
                log.warning("safety-net poll for pending jobs failed: %s", exc)
                continue
            self._quiet = (epoch, time.monotonic(), frozenset(asked) - set(pending))
            for job_type in pending:
                self.wake(job_type, 0)

    def close(self) -> None:
        """Stop the safety-net poll and the listener."""
        if self._safety_net is not None:
            self._safety_net.cancel()
        with contextlib.suppress(Exception):
            self.wakeups.close()
