"""Celery signals as thin adapters onto the lifecycle: complete, fail, release.

A completion or failure the database cannot take yet (a restart) is tried again for up to
``RUNPACK_HEARTBEAT_TIMEOUT_S``, so a result is not thrown away and computed again; past
that the job would have been reaped anyway.

They run where the task ran (the pool process), except ``task_revoked`` and
``worker_shutdown``, which run in the worker's main process.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from runpack_tasks.jobstore import lifecycle
from runpack_tasks.tasks import EXECUTE_TASK
from runpack_tasks.worker_state import state_of

log = logging.getLogger(__name__)


def _app_of(sender: Any) -> Celery | None:
    app = getattr(sender, "app", None)
    return app if getattr(app, "runpack_settings", None) is not None else None


@signals.task_success.connect
def _completed(sender: Any = None, result: Any = None, **_: Any) -> None:
    app = _app_of(sender)
    if app is None or sender.name != EXECUTE_TASK:
        return
    state = state_of(app)
    run = state.runs.pop(sender.request.id, None)
    if run is None or run.outcome is None or run.outcome.output_data is None:
        return
    outcome, output_data = run.outcome, run.outcome.output_data
    result = lifecycle.Completion(
        run.job.id, output_data, outcome.console_output, outcome.cache_version
    )
    done = state.stored(lambda: state.completions.submit(result), f"completing job {run.job.id}")
    if not done:
        log.warning("job %s was taken from this worker before it finished", run.job.id)


@signals.task_failure.connect
def _failed(
    sender: Any = None,
    task_id: str | None = None,
    exception: Any = None,
    args: Any = None,
    **_: Any,
) -> None:
    app = _app_of(sender)
    if app is None or sender.name != EXECUTE_TASK:
        return
    state = state_of(app)
    run = state.runs.pop(task_id or "", None)
    job_id = run.job.id if run is not None else (args or [None])[0]
    if job_id is None:
        return
    console = run.context.console_output if run is not None and run.context else None
    state.stored(
        lambda: lifecycle.fail(
            state.engine,
            job_id,
            state.runner_id,
            error_message=state.limits.error_text(str(exception) or type(exception).__name__),
            console_output=console,
        ),
        f"failing job {job_id}",
    )


@signals.task_revoked.connect
def _revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
    app = _app_of(sender)
    if app is None or request is None or getattr(request, "task_name", None) != EXECUTE_TASK:
        return
    state = state_of(app)
    job_id = (request.args or [None])[0]
    if job_id is not None and lifecycle.release(state.engine, job_id, state.runner_id):
        log.info("job %s released: its task was revoked", job_id)


def release_unfinished(app: Celery) -> None:
    """Give back every job this process is still running (cold shutdown)."""
    state = state_of(app)
    for task_id, run in list(state.runs.items()):
        if lifecycle.release(state.engine, run.job.id, state.runner_id) is not None:
            log.info("job %s released at shutdown", run.job.id)
        state.runs.pop(task_id, None)
