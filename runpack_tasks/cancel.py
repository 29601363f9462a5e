"""Stopping a cancelled job's Celery task: a worker control command that finds the task by
its job id and revokes it, terminating its pool process (prefork).

A task's id is not its job's id (a job may be published several times), so the API cannot
name the task to revoke; it sends ``runpack_cancel`` with the job id to the worker that
claimed the job, and that worker revokes whichever of its running tasks runs the job.

Only the prefork pool of an event-loop transport (Redis, RabbitMQ) terminates it: each of
its processes has its own queues. The blocking prefork pool the filesystem broker uses
shares one queue between its processes, and one killed mid-read leaves the rest waiting
forever; there, as on the threads and solo pools, the plugin learns it from its context
(``ctx.is_cancelled()``, after its next heartbeat). Either way the job stays failed
"cancelled": the claimer's late completion is refused by the lifecycle.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.worker import control
from celery.worker import state as worker_state

from runpack_tasks.tasks import EXECUTE_TASK

log = logging.getLogger(__name__)

#: The control command's name.
CANCEL_COMMAND = "runpack_cancel"


def running_task_ids(job_id: str) -> list[str]:
    """Ids of this worker's running tasks that execute ``job_id``."""
    return [
        request.id
        for request in list(worker_state.active_requests)
        if request.task_name == EXECUTE_TASK and list(request.args or [])[:1] == [job_id]
    ]


def can_terminate(pool: Any) -> bool:
    """Whether a worker's pool can terminate one task safely (see the module docstring)."""
    from celery.concurrency.asynpool import AsynPool  # prefork's; only workers need it

    return isinstance(getattr(pool, "_pool", None), AsynPool)


def runpack_cancel(state: Any, job_id: str) -> dict[str, str]:
    """Revoke (and terminate) this worker's task running ``job_id``; runs in the worker's
    main process when the control command arrives."""
    task_ids = running_task_ids(job_id)
    if not task_ids:
        return {"ok": f"job {job_id} is not running here"}
    if not can_terminate(state.consumer.pool):
        log.info("job %s cancelled: its plugin is told through its context", job_id)
        return {"ok": f"job {job_id}: this pool cannot terminate a task"}
    control.revoke(state, task_ids, terminate=True)
    log.info("job %s cancelled: its task %s was terminated", job_id, ", ".join(task_ids))
    return {"ok": f"job {job_id}: task {', '.join(task_ids)} terminated"}


control.control_command(name=CANCEL_COMMAND, args=[("job_id", str)], signature="<job_id>")(
    runpack_cancel
)


def revoke_job(app: Celery, job_id: str, worker: str) -> None:
    """Ask ``worker`` (a Celery node name) to stop its task running ``job_id``; sends and
    returns (no reply is awaited)."""
    app.control.broadcast(CANCEL_COMMAND, arguments={"job_id": job_id}, destination=[worker])
