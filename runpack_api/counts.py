"""How many jobs there are per type and state, read from the table at most every few seconds.

Counting a table of millions of rows takes a noticeable part of a second, so the admin
stats, the admin job list's ``total`` and ``/metrics`` share one reading per API process,
taken again every ``RUNPACK_COUNTS_CACHE_S`` seconds. A stale reading is answered at once
while one thread reads the table again: no request waits for a count, but the first. With
``RUNPACK_COUNTS_CACHE_S=0`` every request counts (exact, and as slow as the table is big).
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Engine

from runpack_tasks.jobstore import counting

log = logging.getLogger(__name__)

#: (job_type, status) -> how many jobs.
Counts = dict[tuple[str, str], int]


class TableCounts:
    """One API process's shared reading of the job counts."""

    def __init__(self, engine: Engine, ttl_s: float) -> None:
        self._engine = engine
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._reading: tuple[float, Counts] | None = None
        self._refreshing = False

    def _read(self) -> Counts:
        counts = {(t, s): n for t, s, n in counting.counts_by_type(self._engine)}
        self._reading = (time.monotonic(), counts)
        return counts

    def get(self) -> Counts:
        """The counts, at most ``ttl_s`` old (or being read again right now)."""
        if self.ttl_s <= 0:
            return {(t, s): n for t, s, n in counting.counts_by_type(self._engine)}
        with self._lock:
            reading = self._reading
            if reading is None:
                return self._read()
            if time.monotonic() - reading[0] > self.ttl_s and not self._refreshing:
                self._refreshing = True
                threading.Thread(target=self._refresh, name="runpack-counts", daemon=True).start()
        return reading[1]

    def _refresh(self) -> None:
        try:
            self._read()
        except Exception as exc:  # the stale reading stays until a read succeeds
            log.warning("could not count jobs: %s", exc)
        finally:
            self._refreshing = False

    def total(self, status: str | None = None, job_type: str | None = None) -> int:
        """How many jobs match these filters."""
        return sum(
            n
            for (t, s), n in self.get().items()
            if (status is None or s == status) and (job_type is None or t == job_type)
        )
