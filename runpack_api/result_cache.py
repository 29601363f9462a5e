"""Completed results kept in memory, so a cache hit answers without touching the table.

A completed job's result never changes; it can be deleted, expire, or outlive its time to
live. Entries live ``result_cache_ttl_s`` seconds, and never past the moment their result
stops being valid (its TTL, or how long its validity hook's True is trusted), which the
caller gives with each entry. The TTL bounds how long another API process can still serve
a result that was deleted or expired elsewhere; this process drops everything at once when
it deletes or expires a job itself.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import NamedTuple


class CachedAnswer(NamedTuple):
    """An encoded answer, and what a hit on it saved: its job's type and run time."""

    body: bytes
    job_type: str
    run_time_s: float
    #: ``time.monotonic()`` after which the entry is not served.
    expires_at: float


class ResultCache:
    """A byte-bounded LRU of encoded response bodies, each with its own expiry."""

    def __init__(self, ttl_s: float, max_bytes: int) -> None:
        self._ttl_s = ttl_s
        self._max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, CachedAnswer] = OrderedDict()
        self._bytes = 0

    def get(self, key: Hashable) -> CachedAnswer | None:
        """The answer stored under ``key`` if it is still fresh."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at < time.monotonic():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(
        self,
        key: Hashable,
        body: bytes,
        *,
        job_type: str = "",
        run_time_s: float = 0.0,
        valid_for_s: float | None = None,
    ) -> None:
        """Keep ``body`` under ``key`` for the cache's TTL, or ``valid_for_s`` if shorter
        (None: no limit of its own); bodies over 1/16 of the budget are not kept."""
        ttl_s = self._ttl_s if valid_for_s is None else min(self._ttl_s, valid_for_s)
        if ttl_s <= 0 or len(body) * 16 > self._max_bytes:
            return
        self._drop(key)
        self._entries[key] = CachedAnswer(body, job_type, run_time_s, time.monotonic() + ttl_s)
        self._bytes += len(body)
        while self._bytes > self._max_bytes:
            self._drop(next(iter(self._entries)))

    def discard(self, *keys: Hashable) -> None:
        """Forget these entries (their job's result was just expired here)."""
        for key in keys:
            self._drop(key)

    def clear(self) -> None:
        """Forget everything (after this process deleted or expired a job)."""
        self._entries.clear()
        self._bytes = 0

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry.body)
