"""Beat's periodic work: reap stale claims, publish pending jobs that have no message,
apply retention (``retention.py``), and fold the rows of the job counts (``counting.py``).

Jobs a round requeues are published in that same round (when a Celery worker serves their
type): their message is known to be missing, so they need no grace period.

A pending job needs a message when none was ever sent (the broker was down at submit,
or no worker served its type then), or when its message was lost (a broker flushed, a
filesystem-broker worker killed after fetching it). Lost messages are counted, not
guessed: a type with more published pending jobs than messages waiting in its queue
has lost that many, and the oldest published are sent again. A long backlog therefore
never gets duplicates, and a duplicate that slips through is harmless: a message for a
job that is no longer pending is acknowledged and does nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import sqlalchemy as sa
from celery import Celery
from sqlalchemy import Engine

from runpack_tasks.jobstore import counting, lifecycle
from runpack_tasks.jobstore.models import JOBS, JobStatus, now_ms
from runpack_tasks.publisher import Publisher
from runpack_tasks.retention import RetentionReport, apply_retention
from runpack_tasks.routing import queue_for
from runpack_tasks.settings import RunpackSettings

log = logging.getLogger(__name__)

#: A job pending for less than this may still be on its way to being published.
PUBLISH_GRACE_MS = 2_000
#: At most this many messages per type per round.
MAX_REPUBLISH = 1_000


@dataclass
class MaintenanceReport:
    """What one round did."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    retention: RetentionReport = field(default_factory=RetentionReport)


def queue_depth(app: Celery, job_type: str) -> int:
    """Messages waiting in the type's queue (0 when the queue does not exist)."""
    with app.connection_for_write() as conn:
        try:
            return int(
                conn.default_channel.queue_declare(
                    queue=queue_for(job_type), passive=True
                ).message_count
            )
        except Exception:  # a queue never declared (or flushed) holds nothing
            return 0


def _needing_messages(engine: Engine, app: Celery, job_type: str) -> list[str]:
    settled = now_ms() - PUBLISH_GRACE_MS
    pending = sa.and_(
        JOBS.c.status == JobStatus.PENDING.value,
        JOBS.c.job_type == job_type,
        JOBS.c.updated_at < settled,
    )
    with engine.connect() as conn:
        never = (
            conn.execute(
                sa.select(JOBS.c.id)
                .where(pending, JOBS.c.published_at.is_(None))
                .order_by(JOBS.c.created_at)
                .limit(MAX_REPUBLISH)
            )
            .scalars()
            .all()
        )
        published = conn.execute(
            sa.select(sa.func.count())
            .select_from(JOBS)
            .where(pending, JOBS.c.published_at < settled)
        ).scalar_one()
        lost = min(max(0, int(published) - queue_depth(app, job_type)), MAX_REPUBLISH - len(never))
        resend = (
            conn.execute(
                sa.select(JOBS.c.id)
                .where(pending, JOBS.c.published_at < settled)
                .order_by(JOBS.c.published_at)
                .limit(lost)
            )
            .scalars()
            .all()
            if lost
            else []
        )
    return [*never, *resend]


def maintain(
    settings: RunpackSettings, engine: Engine, app: Celery, publisher: Publisher
) -> MaintenanceReport:
    """One round: reap, publish what needs a message, delete what retention allows, and
    fold the job counts' rows (readers fold them too, but a deployment may have none)."""
    reaped = lifecycle.reap(
        engine, heartbeat_timeout_s=settings.heartbeat_timeout_s, max_attempts=settings.max_attempts
    )
    report = MaintenanceReport(requeued=reaped.requeued, failed=reaped.failed)
    served = publisher.served.get().celery
    # a requeued job has no message and nobody else sends one: send it now, not a grace
    # period later
    requeued = [
        (job_id, job_type)
        for job_id, job_type in reaped.requeued_types.items()
        if job_type in served
    ]
    if requeued:
        report.published += publisher.publish(requeued)
    for job_type in sorted(served):
        ids = _needing_messages(engine, app, job_type)
        report.published += publisher.publish([(job_id, job_type) for job_id in ids])
    report.retention = apply_retention(settings, engine)
    counting.fold(engine)
    if report.requeued or report.failed or report.published:
        log.info(
            "maintenance: %d requeued, %d failed (timed out), %d published",
            len(report.requeued),
            len(report.failed),
            len(report.published),
        )
    return report
