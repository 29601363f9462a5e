"""A Celery worker as a runner: registered when ready, kept seen while alive, stopped at exit."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery, signals

from runpack_tasks.jobstore import runners
from runpack_tasks.jobstore.models import RunnerKind
from runpack_tasks.signals import release_unfinished
from runpack_tasks.worker_state import all_states, state_of

log = logging.getLogger(__name__)

#: last_seen is refreshed this often at most (and a few times per active window at least).
MAX_REFRESH_S = 15.0

_stop = threading.Event()


def _runpack_app(sender: Any) -> Celery | None:
    app = getattr(sender, "app", None)
    return app if getattr(app, "runpack_settings", None) is not None else None


def _keep_seen(app: Celery, interval_s: float) -> None:
    state = state_of(app)
    while not _stop.wait(interval_s):
        try:
            if runners.touch(state.engine, state.runner_id) is None:  # deleted: come back
                runners.register(
                    state.engine,
                    state.runner_id,
                    state.job_types,
                    RunnerKind.CELERY,
                    runner_id=state.runner_id,
                )
        except Exception:  # the database may be briefly away; try again next time
            log.warning("could not refresh this worker's last_seen", exc_info=True)


@signals.worker_ready.connect
def _register(sender: Any = None, **_: Any) -> None:
    app = _runpack_app(sender)
    if app is None:
        return
    state = state_of(app)
    runners.register(
        state.engine, state.runner_id, state.job_types, RunnerKind.CELERY, runner_id=state.runner_id
    )
    log.info("registered as runner %s for %s", state.runner_id, ", ".join(state.job_types))
    interval_s = min(MAX_REFRESH_S, state.settings.runner_active_s / 3)
    threading.Thread(
        target=_keep_seen, args=(app, interval_s), name="runpack-presence", daemon=True
    ).start()


@signals.worker_shutdown.connect
def _stop_presence(sender: Any = None, **_: Any) -> None:
    app = _runpack_app(sender)
    if app is None:
        return
    _stop.set()
    release_unfinished(app)
    state = state_of(app)
    runners.stop(state.engine, state.runner_id)


@signals.worker_process_shutdown.connect
def _release_in_child(**_: Any) -> None:
    for state in all_states():
        release_unfinished(state.app)
