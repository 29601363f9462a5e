"""``runpack beat``: a Celery beat whose maintenance entry runs in beat itself.

Reaping and republishing need no worker, so they also happen where only HTTP runners
serve jobs. Running several beats does no harm: a lock (runpack_tasks/beatlock.py) lets
one work while the others idle, and an idle one takes over at its next round once the
working one stops or dies.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.beat import ScheduleEntry, Scheduler

from runpack_tasks.beatlock import beat_lock_for
from runpack_tasks.celery_app import MAINTAIN_TASK
from runpack_tasks.jobstore.db import create_db_engine
from runpack_tasks.maintenance import maintain
from runpack_tasks.publisher import Publisher
from runpack_tasks.wakeups import wakeups_for

log = logging.getLogger(__name__)


class RunpackScheduler(Scheduler):
    """An in-memory schedule; the maintenance entry is executed here, not sent."""

    def setup_schedule(self) -> None:
        super().setup_schedule()
        settings = self.app.runpack_settings
        self._engine = create_db_engine(settings.database_url, pool_size=2)
        self._publisher = Publisher(self.app, self._engine, settings.runner_active_s)
        self._wakeups = wakeups_for(settings)
        self._lock = beat_lock_for(settings.database_url)
        self._working: bool | None = None
        self._holds_lock()

    def _holds_lock(self) -> bool:
        """Whether this beat is the one to work now; logs when that changes."""
        working = self._lock.held()
        if working != self._working:
            if working:
                log.info("beat lock taken (%s): this beat does the maintenance", self._lock.kind)
            else:
                log.info("another runpack beat holds the lock (%s): idling", self._lock.kind)
            self._working = working
        return working

    def close(self) -> None:
        self._lock.release()
        super().close()

    def apply_async(
        self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        if not self._holds_lock():  # another beat works: this one sends and runs nothing
            if advance:
                self.reserve(entry)
            return None
        if entry.task != MAINTAIN_TASK:
            return super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        if advance:
            entry = self.reserve(entry)
        try:
            report = maintain(self.app.runpack_settings, self._engine, self.app, self._publisher)
            if report.requeued:  # wake the long-polling runners of every API process
                self._wakeups.publish(None, 0)
        except Exception:  # one failed round must not stop beat; the next one retries
            log.exception("maintenance round failed")
        return None
