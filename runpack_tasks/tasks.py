"""The Celery task that runs a job: claim it, run its plugin, leave the outcome to signals."""

from __future__ import annotations

import logging

from celery import Task, shared_task

from runner_plugins import get_plugin
from runpack_tasks.errors import PayloadTooLarge
from runpack_tasks.execute import RunContext, run_plugin
from runpack_tasks.jobstore import lifecycle
from runpack_tasks.jobstore.payloads import check_json
from runpack_tasks.worker_state import Run, state_of

log = logging.getLogger(__name__)

#: The name the task is registered and published under.
EXECUTE_TASK = "runpack.execute"


class JobFailed(Exception):
    """Raised by the task when the job's plugin failed; the message is the job's error."""


@shared_task(name=EXECUTE_TASK, bind=True)
def execute(self: Task, job_id: str, job_type: str | None = None) -> None:
    """Run the job if it is still pending; a late message for a taken job does nothing.

    Nothing is returned: the outcome goes to the job store (the signals write it), and
    there is no result backend.
    """
    state = state_of(self.app)
    job = state.stored(lambda: state.claims.submit(job_id), f"claiming job {job_id}")
    if job is None:
        log.info("job %s is no longer pending: message acknowledged", job_id)
        return
    run = Run(job)
    state.runs[self.request.id] = run
    plugin = get_plugin(job.job_type)

    def heartbeat(current: float | None, total: float | None, console: str) -> bool:
        return (
            lifecycle.heartbeat(
                state.engine,
                job_id,
                state.runner_id,
                progress_current=current,
                progress_total=total,
                console_output=console,
            )
            is not None
        )

    run.context = RunContext(
        job_id,
        heartbeat,
        keepalive_s=state.settings.heartbeat_timeout_s / 3,
        max_console_bytes=state.limits.max_console_bytes,
    )
    run.outcome = run_plugin(plugin, job.input_params, run.context)
    if run.outcome.error_message is not None:
        raise JobFailed(run.outcome.error_message)
    output = run.outcome.output_data or {}
    try:  # what the API refuses a runner's output for: too large, too deep, not JSON
        check_json("output_data", output, state.limits.max_output_bytes)
    except PayloadTooLarge:
        raise JobFailed(str(state.limits.output_failure(output))) from None
