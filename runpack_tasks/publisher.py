"""Sending a pending job's Celery message, to its type's queue, when a worker serves the type.

A type only HTTP runners serve is never published, so no queue grows without a consumer.
Messages go through the default (anonymous) exchange straight to the queue, so they
arrive even if the broker lost its bindings (a Redis FLUSHALL).
"""

from __future__ import annotations

import logging
import threading
from queue import SimpleQueue
from typing import Any

from celery import Celery
from kombu.entity import Exchange, Queue
from sqlalchemy import Engine

from runpack_tasks.jobstore import lifecycle
from runpack_tasks.jobstore.models import now_ms
from runpack_tasks.routing import queue_for
from runpack_tasks.served import ServedTypes
from runpack_tasks.tasks import EXECUTE_TASK

log = logging.getLogger(__name__)

#: The anonymous exchange delivers to the queue its routing key names, binding or not.
DEFAULT_EXCHANGE = Exchange("")
#: At most this many announced messages per producer checkout, and per producer batch.
MAX_BATCH = 1000
#: Broker commands a message may take in a batch (kombu's Redis transport: LPUSH, and a
#: PEXPIRE per priority step for a queue with an expiry).
BATCH_COMMANDS = 16


class Publisher:
    """Publishes jobs for one process (the API or beat).

    ``announce`` hands a message to a sender thread and returns at once: a request never
    waits for the broker, and a busy sender sends what queued up in one producer checkout.
    """

    def __init__(self, app: Celery, engine: Engine, active_s: float) -> None:
        self._app = app
        self._engine = engine
        self._active_s = active_s
        self._lock = threading.Lock()
        #: Which types Celery workers (and runners) serve now, read for a moment at a time.
        self.served = ServedTypes(engine, active_s)
        self._queues: dict[str, Queue] = {}
        self._outbox: SimpleQueue[tuple[str, str] | None] = SimpleQueue()
        self._sender: threading.Thread | None = None

    @property
    def app(self) -> Celery:
        """The Celery app messages are sent through."""
        return self._app

    def _queue(self, job_type: str) -> Queue:
        queue = self._queues.get(job_type)
        if queue is None:
            name = queue_for(job_type)
            queue = self._queues[job_type] = Queue(name, DEFAULT_EXCHANGE, routing_key=name)
        return queue

    def send(self, job_id: str, job_type: str, producer: Any = None) -> None:
        """Send the message; raises the broker's error if it cannot be reached."""
        kwargs = {"job_type": job_type}
        self._app.send_task(
            EXECUTE_TASK,
            args=[job_id],
            kwargs=kwargs,
            queue=self._queue(job_type),
            retry=False,
            producer=producer,
            # what Flower shows; repr of these plain values is what saferepr would give
            argsrepr=repr([job_id]),
            kwargsrepr=repr(kwargs),
        )

    def publish(self, jobs: list[tuple[str, str]]) -> list[str]:
        """Send (job_id, job_type) messages and record them; returns the ids sent.

        Stops at the first broker error: the rest stay unpublished for beat to retry.
        """
        sent = self._send_all(jobs)
        lifecycle.mark_published(self._engine, sent)
        return sent

    def _send_all(self, jobs: list[tuple[str, str]]) -> list[str]:
        """Send the messages, ``MAX_BATCH`` at a time in one producer batch (kombu's Redis
        transport writes a batch's messages in one pipeline, about 0.1 ms of CPU less a
        message than one round trip each; other transports send each at once); returns
        the ids of the batches that went out whole. A batch whose sending failed counts
        as unsent, even if the broker took part of it: a job's message sent twice is
        claimed once."""
        sent: list[str] = []
        try:
            with self._app.producer_or_acquire() as producer:
                for start in range(0, len(jobs), MAX_BATCH):
                    batch = jobs[start : start + MAX_BATCH]
                    # room for a queue's expiry commands too: nothing is sent before the end
                    with producer.batch(max_size=BATCH_COMMANDS * len(batch)):
                        for job_id, job_type in batch:
                            self.send(job_id, job_type, producer)
                    sent.extend(job_id for job_id, _ in batch)
        except Exception as exc:  # kombu raises transport-specific errors
            log.warning(
                "broker unreachable, %d job(s) left for beat: %s", len(jobs) - len(sent), exc
            )
        return sent

    def publish_if_served(self, job_id: str, job_type: str) -> bool:
        """Publish a job that just became pending, if a Celery worker serves its type."""
        if job_type not in self.served.get().celery:
            return False
        return bool(self.publish([(job_id, job_type)]))

    def announce(self, job_id: str, job_type: str) -> None:
        """Have the sender thread send the message of a job submitted as being published;
        if that fails the job is unmarked, so beat sends it later."""
        self.announce_many([(job_id, job_type)])

    def announce_many(self, jobs: list[tuple[str, str]]) -> None:
        """``announce`` for several (job_id, job_type) at once: the sender thread sends
        them in producer checkouts of up to ``MAX_BATCH`` messages."""
        for job in jobs:
            self._outbox.put(job)
        if self._sender is None or not self._sender.is_alive():
            with self._lock:
                if self._sender is None or not self._sender.is_alive():
                    self._sender = threading.Thread(
                        target=self._send_announced, name="runpack-publisher", daemon=True
                    )
                    self._sender.start()

    def _send_announced(self) -> None:
        while True:
            jobs: list[tuple[str, str]] = []
            item = self._outbox.get()
            while item is not None:
                jobs.append(item)
                if len(jobs) >= MAX_BATCH or self._outbox.empty():
                    break
                item = self._outbox.get()
            if jobs:
                started = now_ms()
                sent = set(self._send_all(jobs))
                unsent = [job_id for job_id, _ in jobs if job_id not in sent]
                if unsent:
                    self._unmark(unsent, started)
            if item is None:
                return

    def _unmark(self, job_ids: list[str], started: int) -> None:
        """Clear the marks made at submit for messages that could not be sent (not one
        beat made since ``started``, with a message that went out)."""
        try:
            lifecycle.mark_published(self._engine, job_ids, published=False, marked_by=started)
        except Exception:  # the store is down too: beat counts them as lost instead
            log.exception("could not unmark %d unsent job(s)", len(job_ids))

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what was announced (waiting up to ``timeout_s``), then stop the sender;
        whatever is left unsent has its mark and reaches beat's lost-message count."""
        sender = self._sender
        if sender is not None and sender.is_alive():
            self._outbox.put(None)
            sender.join(timeout_s)
