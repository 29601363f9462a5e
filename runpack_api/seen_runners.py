"""The runners one API process knows, and when each was last heard from here.

A runner's identity (id, name, capabilities) does not change after it registers, so each
API process keeps the rows it has read: a runner's request (a long poll coming back, a
claim, a heartbeat) then costs no query to say who it is. When it was heard from is noted
in memory and written for all of this process's runners at once every ``flush_s`` seconds
(``runners.mark_seen``: one transaction), which also confirms that each still exists. A row
not confirmed for ``KNOWN_S`` seconds (its runner went quiet, or was deleted) is read again
on the runner's next request (``runners.touch``), as is one that stopped through this
process; a stop received by another process is cleared by the next flush of a request
heard after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import Row
from starlette.concurrency import run_in_threadpool

from runpack_tasks.jobstore import runners
from runpack_tasks.jobstore.models import now_ms

log = logging.getLogger(__name__)

#: How long a kept row is trusted without a flush confirming its runner still exists.
KNOWN_S = 60.0
#: Most runner rows one process keeps (the least recently heard from go first).
MAX_KNOWN = 100_000


class SeenRunners:
    """This process's known runner rows and the times it heard from them since the last
    flush."""

    def __init__(self, engine: Engine, flush_s: float = runners.TOUCH_INTERVAL_MS / 1000) -> None:
        self._engine = engine
        self._flush_s = flush_s
        #: runner id -> (its row, when a read or a flush last confirmed it: monotonic s)
        self._known: OrderedDict[str, tuple[Row[Any], float]] = OrderedDict()
        #: runner id -> when this process last heard from it (epoch ms), not yet written
        self._seen: dict[str, int] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def get(self, runner_id: str) -> Row[Any] | None:
        """The runner, noted as heard from now; None if there is no such runner. The time
        is taken before anything is awaited, so a stop handled meanwhile stands."""
        heard = now_ms()
        kept = self._known.get(runner_id)
        if kept is not None and time.monotonic() - kept[1] < KNOWN_S:
            self._known.move_to_end(runner_id)
            self._seen[runner_id] = heard
            return kept[0]
        confirmed = time.monotonic()
        row = await run_in_threadpool(runners.touch, self._engine, runner_id, heard)
        if row is None:
            self._known.pop(runner_id, None)
        else:
            self._known[runner_id] = (row, confirmed)
            self._known.move_to_end(runner_id)
            while len(self._known) > MAX_KNOWN:
                self._known.popitem(last=False)
        return row

    def forget(self, runner_id: str) -> None:
        """Drop what this process knows of the runner (it stopped): its next request reads
        the table, and is recorded there at once."""
        self._known.pop(runner_id, None)
        self._seen.pop(runner_id, None)

    @property
    def unwritten(self) -> int:
        """How many runners were heard from since the last flush."""
        return len(self._seen)

    def start(self) -> None:
        """Flush every ``flush_s`` seconds (on the running loop)."""
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_every())

    async def _flush_every(self) -> None:
        while True:
            await asyncio.sleep(self._flush_s)
            await self.flush()

    async def flush(self) -> None:
        """Write when each runner was heard from; forget the runners that no longer exist."""
        seen, self._seen = self._seen, {}
        if not seen:
            return
        confirmed = time.monotonic()
        try:
            existing = await run_in_threadpool(runners.mark_seen, self._engine, seen)
        except Exception as exc:  # kept for the next flush, unless heard from since
            log.warning("could not record when runners were seen: %s", exc)
            for runner_id, seen_ms in seen.items():
                self._seen.setdefault(runner_id, seen_ms)
            return
        for runner_id in seen:
            kept = self._known.get(runner_id)
            if runner_id not in existing:
                self._known.pop(runner_id, None)
            elif kept is not None:
                self._known[runner_id] = (kept[0], confirmed)

    def close(self) -> None:
        """Stop flushing, and write what is noted."""
        if self._flusher is not None:
            self._flusher.cancel()
        seen, self._seen = self._seen, {}
        with contextlib.suppress(Exception):
            runners.mark_seen(self._engine, seen)
