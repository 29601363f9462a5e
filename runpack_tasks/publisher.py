"""Sending a pending job's Celery message, to its type's queue, when a worker serves the type.

A type only HTTP runners serve is never published, so no queue grows without a consumer.
Messages go through the default (anonymous) exchange straight to the queue, so they
arrive even if the broker lost its bindings (a Redis FLUSHALL).
"""

from __future__ import annotations

import logging
import threading
import time

import sqlalchemy as sa
from celery import Celery
from kombu.entity import Exchange, Queue
from sqlalchemy import Engine

from runpack_tasks.jobstore import lifecycle
from runpack_tasks.jobstore.models import RUNNERS, RunnerKind, now_ms
from runpack_tasks.routing import queue_for

log = logging.getLogger(__name__)

EXECUTE_TASK = "runpack.execute"
#: The anonymous exchange delivers to the queue its routing key names, binding or not.
DEFAULT_EXCHANGE = Exchange("")
#: How long the set of types live Celery workers serve is reused before it is read again.
LIVE_TYPES_TTL_S = 2.0


def live_celery_types(engine: Engine, active_s: float) -> set[str]:
    """Job types served by a Celery worker seen within ``active_s`` seconds."""
    cutoff = now_ms() - int(active_s * 1000)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(RUNNERS.c.capabilities).where(
                RUNNERS.c.kind == RunnerKind.CELERY.value, RUNNERS.c.last_seen >= cutoff
            )
        ).all()
    return {job_type for (capabilities,) in rows for job_type in capabilities}


class Publisher:
    """Publishes jobs for one process (the API or beat)."""

    def __init__(self, app: Celery, engine: Engine, active_s: float) -> None:
        self._app = app
        self._engine = engine
        self._active_s = active_s
        self._lock = threading.Lock()
        self._live: tuple[float, set[str]] = (0.0, set())

    def served_types(self) -> set[str]:
        """Types some live Celery worker consumes (cached for a moment)."""
        with self._lock:
            read_at, types = self._live
            if time.monotonic() - read_at < LIVE_TYPES_TTL_S:
                return types
        types = live_celery_types(self._engine, self._active_s)
        with self._lock:
            self._live = (time.monotonic(), types)
        return types

    def send(self, job_id: str, job_type: str) -> None:
        """Send the message; raises the broker's error if it cannot be reached."""
        name = queue_for(job_type)
        self._app.send_task(
            EXECUTE_TASK,
            args=[job_id],
            kwargs={"job_type": job_type},
            queue=Queue(name, DEFAULT_EXCHANGE, routing_key=name),
            retry=False,
        )

    def publish(self, jobs: list[tuple[str, str]]) -> list[str]:
        """Send (job_id, job_type) messages and record them; returns the ids sent.

        Stops at the first broker error: the rest stay unpublished for beat to retry.
        """
        sent: list[str] = []
        try:
            for job_id, job_type in jobs:
                self.send(job_id, job_type)
                sent.append(job_id)
        except Exception as exc:  # kombu raises transport-specific errors
            log.warning(
                "broker unreachable, %d job(s) left for beat: %s", len(jobs) - len(sent), exc
            )
        lifecycle.mark_published(self._engine, sent)
        return sent

    def publish_if_served(self, job_id: str, job_type: str) -> bool:
        """Publish a job that just became pending, if a Celery worker serves its type."""
        if job_type not in self.served_types():
            return False
        return bool(self.publish([(job_id, job_type)]))

    def send_announced(self, job_id: str, job_type: str) -> None:
        """Send the message of a job submitted as being published; unmark it if that fails,
        so beat sends it later."""
        try:
            self.send(job_id, job_type)
        except Exception as exc:  # kombu raises transport-specific errors
            log.warning("broker unreachable, job %s left for beat: %s", job_id, exc)
            lifecycle.mark_published(self._engine, [job_id], published=False)
