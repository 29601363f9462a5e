"""What one API process holds for its lifetime: settings, engine, caches, limiters."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from runner_plugins import Plugin, installed_plugins
from runpack_api.grouping import GroupCommit
from runpack_api.metrics import Metrics
from runpack_api.ratelimit import RateLimits
from runpack_api.result_cache import ResultCache
from runpack_tasks.celery_app import make_celery
from runpack_tasks.jobstore.db import create_db_engine
from runpack_tasks.publisher import Publisher
from runpack_tasks.settings import RunpackSettings


class PendingSignal:
    """Wakes long-polling runners in this process when a job becomes pending."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """A job just became pending here."""
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout_s: float) -> None:
        """Return on the next notification or after ``timeout_s``."""
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)


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
    pending: PendingSignal = field(default_factory=PendingSignal)
    #: The single submits' group commit (operations.py makes it on first use).
    submit_group: GroupCommit[Any, Any] | None = None

    @classmethod
    def start(cls, settings: RunpackSettings) -> Runtime:
        """Build the runtime for ``settings`` (opens no connection yet)."""
        engine = create_db_engine(settings.database_url)
        return cls(
            settings=settings,
            engine=engine,
            results=ResultCache(settings.result_cache_ttl_s, settings.result_cache_bytes),
            rate_limits=RateLimits(settings),
            publisher=Publisher(make_celery(settings), engine, settings.runner_active_s),
            metrics=Metrics(engine),
            plugins=installed_plugins(),
        )

    def close(self) -> None:
        """Send the messages still queued, then release the database connections."""
        self.publisher.close()
        self.engine.dispose()
