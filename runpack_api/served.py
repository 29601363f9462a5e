"""Which job types something serves now: an active HTTP runner or Celery worker.

A submit of a pending job says when nothing serves its type. The set is read from the
runners table at most once per ``ttl_s`` per process, so a burst of submits costs one query.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine

from runpack_tasks.jobstore import queries

#: How long the set is reused before it is read again.
SERVED_TYPES_TTL_S = 2.0


class ServedTypes:
    """The job types active runners (HTTP or Celery) serve, cached for a moment."""

    def __init__(self, engine: Engine, active_s: float, ttl_s: float = SERVED_TYPES_TTL_S) -> None:
        self._engine = engine
        self._active_s = active_s
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._read: tuple[float, frozenset[str]] | None = None

    def __contains__(self, job_type: object) -> bool:
        return job_type in self.types()

    def forget(self) -> None:
        """Read the set again at the next use (a runner registered in this process)."""
        with self._lock:
            self._read = None

    def types(self) -> frozenset[str]:
        """The served types, read again once the cached set is older than ``ttl_s``."""
        with self._lock:
            if self._read is not None and time.monotonic() - self._read[0] < self._ttl_s:
                return self._read[1]
        types = frozenset(queries.job_types_served(self._engine, self._active_s))
        with self._lock:
            self._read = (time.monotonic(), types)
        return types
