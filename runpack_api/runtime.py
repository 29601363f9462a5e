"""What one API process holds for its lifetime: settings, engine, caches, limiters."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from runner_plugins import Plugin, installed_plugins
from runpack_api.counts import TableCounts
from runpack_api.grouping import GroupCommit
from runpack_api.metrics import Metrics
from runpack_api.pending import PendingSignal
from runpack_api.ratelimit import RateLimits
from runpack_api.result_cache import ResultCache
from runpack_api.seen_runners import SeenRunners
from runpack_api.validity import Validity
from runpack_tasks.celery_app import make_celery
from runpack_tasks.jobstore.checkpoints import WalCheckpoints
from runpack_tasks.jobstore.db import create_db_engine
from runpack_tasks.publisher import Publisher
from runpack_tasks.settings import RunpackSettings
from runpack_tasks.shared_counts import shared_counts
from runpack_tasks.wakeups import wakeups_for


class LongPolls:
    """Bounds the long polls one API process holds at once: past the bound, a poll is
    answered at once (no wait) instead of piling up."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    @contextlib.contextmanager
    def slot(self, wait_s: float) -> Iterator[float]:
        """The wait granted for a poll that asked for ``wait_s``: all of it while under the
        bound (a slot is held until the block ends), else none."""
        if wait_s <= 0 or self.held >= self.limit:
            yield 0.0
            return
        self.held += 1
        try:
            yield wait_s
        finally:
            self.held -= 1


@dataclass
class Runtime:
    """The long-lived objects behind every request of one API process."""

    settings: RunpackSettings
    engine: Engine
    results: ResultCache
    rate_limits: RateLimits
    publisher: Publisher
    metrics: Metrics
    #: The plugins installed here; their parameter validation runs at submit.
    plugins: dict[str, Plugin]
    #: Judges completed results before they are served.
    validity: Validity
    #: Wakes this process's long-polling runners, and tells the other API processes.
    pending: PendingSignal
    #: Jobs per type and state, read at most every RUNPACK_COUNTS_CACHE_S.
    counts: TableCounts
    #: Long polls this process holds now, and their bound.
    long_polls: LongPolls
    #: The runners this process knows, and when it last heard from each.
    runners: SeenRunners
    #: The single submits' group commit (operations.py makes it on first use).
    submit_group: GroupCommit[Any, Any] | None = None
    #: Checkpoints of a SQLite database's log, off the writers' path (None on PostgreSQL).
    wal_checkpoints: WalCheckpoints | None = None

    @classmethod
    def start(cls, settings: RunpackSettings) -> Runtime:
        """Build the runtime for ``settings`` (opens no connection yet)."""
        engine = create_db_engine(settings.database_url)
        counts = TableCounts(engine, settings.counts_cache_s)
        metrics = Metrics(engine, counts, shared_counts(settings))
        pending = PendingSignal(wakeups_for(settings), settings.wakeup_poll_s)
        metrics.long_polls.set_function(lambda: pending.waiting)
        return cls(
            settings=settings,
            engine=engine,
            results=ResultCache(settings.result_cache_ttl_s, settings.result_cache_bytes),
            rate_limits=RateLimits(settings),
            publisher=Publisher(make_celery(settings), engine, settings.runner_active_s),
            metrics=metrics,
            plugins=installed_plugins(),
            validity=Validity(settings),
            pending=pending,
            counts=counts,
            long_polls=LongPolls(settings.max_long_polls),
            runners=SeenRunners(engine),
            wal_checkpoints=WalCheckpoints.for_engine(engine),
        )

    def close(self) -> None:
        """Send the messages still queued, then release the database connections."""
        if self.submit_group is not None:
            self.submit_group.close()
        self.pending.close()
        self.runners.close()
        if self.wal_checkpoints is not None:
            self.wal_checkpoints.close()
        self.publisher.close()
        self.validity.close()
        self.engine.dispose()
