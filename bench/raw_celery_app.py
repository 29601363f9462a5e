"""A plain Celery app with one no-op task: the raw-Celery baseline of ``bench/celery_bench.py``.

It has the settings Runpack's app has where they matter for throughput (late acks,
reject-on-worker-lost, prefetch multiplier 1, no result backend, JSON), and nothing of
Runpack. The task counts its executions with a Redis INCR (the same Redis, the same
database as the broker), and the execution that brings the count to ``n`` stores the
wall-clock time under ``<key>:done``, so the benchmark knows exactly when the last task ran.

The worker is started by the benchmark as::

    python -m celery -A bench.raw_celery_app worker -Q <queue> --pool prefork --concurrency 2

and reads its configuration from the environment:

- ``RAW_CELERY_BROKER_URL``  the broker (default ``redis://127.0.0.1:6379/12``)
- ``RAW_CELERY_COUNTER_URL`` the Redis of the counter (default: the broker, which must
  then be a Redis; set it when the broker is RabbitMQ)
- ``RAW_CELERY_PREFETCH``    the prefetch multiplier (default 1)
- ``RAW_CELERY_EVENTS``      ``1`` to send task events as Runpack does (default 0)
- ``RAW_CELERY_CHANNEL``     ``runpack`` to use Runpack's Redis channel (one redis client
  per channel, ``runpack_tasks/redisbroker.py``) instead of kombu's (default ``kombu``)
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

from runpack_tasks import redisbroker

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/12"
TASK_NAME = "bench.raw.noop"

_counter: tuple[int, redis.Redis] | None = None


def counter(counter_url: str) -> redis.Redis:
    """This process's Redis client for the counter (a forked pool child makes its own)."""
    global _counter
    if _counter is None or _counter[0] != os.getpid():
        _counter = (os.getpid(), redis.Redis.from_url(counter_url))
    return _counter[1]


def make_app(
    broker_url: str,
    prefetch: int = 1,
    events: bool = False,
    channel: str = "kombu",
    counter_url: str | None = None,
) -> Celery:
    """The baseline app; ``events`` adds Runpack's task events (sent, received, ...), and
    ``channel="runpack"`` Runpack's Redis channel."""
    if channel == "runpack":
        redisbroker.register()
    elif channel != "kombu":
        raise ValueError(f"unknown channel {channel!r}: kombu or runpack")
    app = Celery("raw_bench", broker=broker_url, set_as_current=False)
    app.conf.update(
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        result_backend=None,
        worker_prefetch_multiplier=prefetch,
        task_serializer="json",
        accept_content=["json"],
        worker_send_task_events=events,
        task_send_sent_event=events,
    )

    @app.task(name=TASK_NAME, shared=False)  # type: ignore[untyped-decorator]
    def noop(key: str, n: int) -> None:
        client = counter(counter_url or broker_url)
        if client.incr(key) == n:
            client.set(f"{key}:done", repr(time.time()))

    return app


app = make_app(
    os.environ.get("RAW_CELERY_BROKER_URL", DEFAULT_BROKER_URL),
    prefetch=int(os.environ.get("RAW_CELERY_PREFETCH", "1")),
    events=os.environ.get("RAW_CELERY_EVENTS", "0") == "1",
    channel=os.environ.get("RAW_CELERY_CHANNEL", "kombu"),
    counter_url=os.environ.get("RAW_CELERY_COUNTER_URL"),
)
