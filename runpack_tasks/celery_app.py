"""make_celery(settings): the Celery app, configured so that no job is lost.

- Late acks and reject-on-worker-lost: a message is acknowledged only after its task ran,
  and a worker killed mid-task gives its message back.
- Prefetch 1 by default: a worker holds at most one waiting message per process.
- No result backend: results are written to the jobs table by the lifecycle module.
- Redis ``visibility_timeout`` (RUNPACK_VISIBILITY_TIMEOUT_S, default 2 h) above the
  longest job: a message unacknowledged that long is redelivered. A redelivered message
  for a job that is no longer pending is acknowledged and does nothing, so redelivery is
  always safe; the reaper, not redelivery, is what recovers jobs of dead workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery

from runpack_tasks import fsbroker, redisbroker
from runpack_tasks.routing import DEFAULT_QUEUE
from runpack_tasks.settings import RunpackSettings

#: How often an idle worker on the filesystem broker looks for new messages: a look is one
#: ``stat`` of the folder for all its queues while nothing changes (fsbroker.Channel), and
#: kombu's own work around it, about 0.2 ms of CPU whatever the number of queues; at this
#: interval an idle ``runpack up`` spends about 2% of a core in all, and a job waits about
#: 8 ms for it on average (bench/embedded_pickup_bench.py; every 10 ms: about 3%).
FILESYSTEM_POLLING_INTERVAL_S = 0.015
#: The filesystem broker deletes a message file when a worker fetches it, so holding
#: one message per process buys no safety there, and it drains several times slower than
#: with 4 (bench/embedded_broker_bench.py). Lost fetched messages are republished by beat.
FILESYSTEM_PREFETCH = 4
#: The beat schedule entry beat runs itself (beat.RunpackScheduler), never sent to a worker.
MAINTAIN_TASK = "runpack.maintain"


def filesystem_folder(broker_url: str) -> Path | None:
    """The folder of a ``filesystem://<folder>`` broker URL, None for other brokers."""
    if not broker_url.startswith("filesystem://"):
        return None
    return Path(broker_url.removeprefix("filesystem://") or "runpack-broker").resolve()


def broker_options(settings: RunpackSettings) -> dict[str, Any]:
    """Transport options: folders for the filesystem broker, visibility for Redis."""
    folder = filesystem_folder(settings.broker_url)
    if folder is not None:
        queue, control = folder / "queue", folder / "control"
        queue.mkdir(parents=True, exist_ok=True)
        control.mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "control_folder": str(control),
            "polling_interval": FILESYSTEM_POLLING_INTERVAL_S,
        }
    return {"visibility_timeout": settings.visibility_timeout_s}


def make_celery(settings: RunpackSettings) -> Celery:
    """The Celery app for ``settings`` (no connection is opened here)."""
    is_filesystem = filesystem_folder(settings.broker_url) is not None
    broker_url = fsbroker.register() if is_filesystem else settings.broker_url
    redisbroker.register()
    app = Celery("runpack", broker=broker_url, set_as_current=False)
    app.conf.update(
        broker_transport_options=broker_options(settings),
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=settings.broker_timeout_s,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        result_backend=None,
        worker_prefetch_multiplier=settings.worker_prefetch
        or (FILESYSTEM_PREFETCH if is_filesystem else 1),
        task_default_queue=DEFAULT_QUEUE,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        # Task events cost each worker about a millisecond per task; Flower turns them on
        # in the workers while it runs (its --enable-events, on by default).
        worker_send_task_events=False,
        task_send_sent_event=False,
        beat_schedule={
            "runpack-maintain": {
                "task": MAINTAIN_TASK,
                "schedule": settings.reap_interval_s,
            },
        },
    )
    app.runpack_settings = settings  # type: ignore[attr-defined]
    # The task, the signal receivers that finish jobs and register workers, and the
    # control command that stops a cancelled job's task.
    import runpack_tasks.cancel
    import runpack_tasks.presence
    import runpack_tasks.signals
    import runpack_tasks.tasks  # noqa: F401

    return app
