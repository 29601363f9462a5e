"""Completed results kept in memory, so a cache hit answers without touching the table.

A completed job's result never changes; it can only be deleted or expire. Entries live
``result_cache_ttl_s`` seconds, which bounds how long another API process can still serve
a result that was deleted or expired elsewhere; this process drops everything at once
when it deletes or expires a job itself.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable


class ResultCache:
    """A byte-bounded LRU of encoded response bodies with a time to live."""

    def __init__(self, ttl_s: float, max_bytes: int) -> None:
        self._ttl_s = ttl_s
        self._max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0

    def get(self, key: Hashable) -> bytes | None:
        """The body stored under ``key`` if it is still fresh."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, body = entry
        if expires_at < time.monotonic():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return body

    def put(self, key: Hashable, body: bytes) -> None:
        """Keep ``body`` under ``key``; bodies over 1/16 of the budget are not kept."""
        if self._ttl_s <= 0 or len(body) * 16 > self._max_bytes:
            return
        self._drop(key)
        self._entries[key] = (time.monotonic() + self._ttl_s, body)
        self._bytes += len(body)
        while self._bytes > self._max_bytes:
            self._drop(next(iter(self._entries)))

    def clear(self) -> None:
        """Forget everything (after this process deleted or expired a job)."""
        self._entries.clear()
        self._bytes = 0

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[1])
