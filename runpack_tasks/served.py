"""Which job types something serves now: any active runner, and active Celery workers.

The publisher sends a job's message only when a Celery worker serves its type, and a
submit of a pending job says when nothing serves its type. Both are read from the runners
table in one query, at most once per ``ttl_s`` per process, so a burst of submits costs one.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine

from runpack_tasks.jobstore import queries
from runpack_tasks.jobstore.queries import Served

#: How long the set is reused before it is read again.
SERVED_TYPES_TTL_S = 2.0


class ServedTypes:
    """The job types active runners serve, cached for a moment."""

    def __init__(self, engine: Engine, active_s: float, ttl_s: float = SERVED_TYPES_TTL_S) -> None:
        self._engine = engine
        self._active_s = active_s
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._read: tuple[float, Served] | None = None

    def forget(self) -> None:
        """Read the set again at the next use (a runner registered in this process)."""
        with self._lock:
            self._read = None

    def get(self) -> Served:
        """The served types, read again once the cached ones are older than ``ttl_s``."""
        with self._lock:
            if self._read is not None and time.monotonic() - self._read[0] < self._ttl_s:
                return self._read[1]
        types = queries.job_types_served(self._engine, self._active_s)
        with self._lock:
            self._read = (time.monotonic(), types)
        return types
