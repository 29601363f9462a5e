"""Counts beat keeps for every API process to read: in Redis when one is configured, else
in a file in the filesystem broker's folder (which every process of such a setup shares).

Beat runs in its own process, and ``/metrics`` is answered by API processes; a count that
only beat's memory held would never reach a scrape. Counts reset if that store is wiped,
as Prometheus counters may.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path
from typing import Protocol

import redis

from runpack_tasks.celery_app import filesystem_folder
from runpack_tasks.settings import RunpackSettings

log = logging.getLogger(__name__)

#: The Redis hash of a family of counts is this prefix and the family's name.
REDIS_PREFIX = "runpack:counts:"


class SharedCounts(Protocol):
    """Named families of counts, each a label -> total mapping."""

    def add(self, family: str, amounts: dict[str, int]) -> None:
        """Add ``amounts`` to the family's totals."""

    def read(self, family: str) -> dict[str, int]:
        """The family's totals (empty when nothing was counted yet)."""


class RedisCounts:
    """Counts in one Redis hash per family (HINCRBY: atomic, whoever adds)."""

    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def add(self, family: str, amounts: dict[str, int]) -> None:
        with self._redis.pipeline(transaction=False) as pipe:
            for label, amount in amounts.items():
                pipe.hincrby(REDIS_PREFIX + family, label, amount)
            pipe.execute()

    def read(self, family: str) -> dict[str, int]:
        stored = self._redis.hgetall(REDIS_PREFIX + family)
        return {key.decode(): int(value) for key, value in stored.items()}  # type: ignore[union-attr]


class FileCounts:
    """Counts in one JSON file per family, replaced whole on each addition (one writer:
    beat; a reader sees the old file or the new one, never half of one)."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    def _path(self, family: str) -> Path:
        return self._folder / f"{family}.json"

    def add(self, family: str, amounts: dict[str, int]) -> None:
        totals = self.read(family)
        for label, amount in amounts.items():
            totals[label] = totals.get(label, 0) + amount
        self._folder.mkdir(parents=True, exist_ok=True)
        staging = self._path(family).with_suffix(f".{os.getpid()}.tmp")
        staging.write_text(json.dumps(totals))
        staging.replace(self._path(family))

    def read(self, family: str) -> dict[str, int]:
        try:
            stored = json.loads(self._path(family).read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {str(key): int(value) for key, value in stored.items()}


@functools.cache
def _counts(redis_url: str | None, folder: Path | None) -> SharedCounts | None:
    if redis_url:
        return RedisCounts(redis_url)
    if folder is not None:
        return FileCounts(folder / "counts")
    return None


def shared_counts(settings: RunpackSettings) -> SharedCounts | None:
    """Where ``settings``' processes share counts: the Redis of ``RUNPACK_REDIS_URL`` or a
    Redis broker, else the filesystem broker's folder; None with any other broker."""
    return _counts(settings.rate_limit_storage_url, filesystem_folder(settings.broker_url))
