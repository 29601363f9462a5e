"""What a Celery worker process holds: its settings, its database engine, its runner id.

The engine is made lazily in each process (never inherited across a fork), and the runs
in progress are kept by task id so the signals can finish them.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from celery import Celery
from sqlalchemy import Engine

from runpack_tasks.execute import JobOutcome, RunContext
from runpack_tasks.jobstore import lifecycle
from runpack_tasks.jobstore.db import create_db_engine, until_stored
from runpack_tasks.jobstore.models import JobRow
from runpack_tasks.report_limits import ReportLimits
from runpack_tasks.settings import RunpackSettings
from runpack_tasks.write_group import WriteGroup

T = TypeVar("T")


@dataclass
class Run:
    """A job this process claimed and is running."""

    job: JobRow
    context: RunContext | None = None
    outcome: JobOutcome | None = None


class WorkerState:
    """Per-process state of a worker, found from its Celery app."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.settings: RunpackSettings = app.runpack_settings  # type: ignore[attr-defined]
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget_engine)
        self.runs: dict[str, Run] = {}
        #: The claims and completions of this process's threads, each group one statement
        #: (a prefork process runs one task at a time: its groups are of one).
        self.claims: WriteGroup[str, JobRow | None] = WriteGroup(
            lambda job_ids: lifecycle.claim_many(self.engine, job_ids, self.runner_id)
        )
        self.completions: WriteGroup[lifecycle.Completion, bool] = WriteGroup(
            lambda results: lifecycle.complete_many(self.engine, self.runner_id, results)
        )

    @property
    def engine(self) -> Engine:
        """This process's engine (a forked child makes its own)."""
        made = self._engine
        if made is not None:
            return made
        with self._lock:
            if self._engine is None:
                self._engine = create_db_engine(self.settings.database_url, pool_size=2)
            return self._engine

    def stored(self, write: Callable[[], T], what: str) -> T:
        """``write()``, a claim or a report, tried again while the database is unavailable
        (a restart) for up to the heartbeat timeout: past that the job is reaped anyway."""
        return until_stored(write, self.settings.heartbeat_timeout_s, what)

    def _forget_engine(self) -> None:
        """In a forked child: the parent's connections are not this process's to use.

        The parent's engine is kept, unused: collecting it would close its connections,
        and closing a connection tells the server to end the session the parent still uses.
        """
        if self._engine is not None:
            _INHERITED_ENGINES.append(self._engine)
        self._engine = None
        self._lock = threading.Lock()

    @functools.cached_property
    def limits(self) -> ReportLimits:
        """What this worker's reports are held to (``RUNPACK_MAX_*_BYTES``)."""
        return ReportLimits.from_settings(self.settings)

    @functools.cached_property
    def runner_id(self) -> str:
        """The id this worker is registered under (its Celery node name)."""
        return str(self.app.conf.get("runpack_runner_id") or "celery-worker")

    @property
    def job_types(self) -> list[str]:
        """The job types this worker consumes."""
        return list(self.app.conf.get("runpack_job_types") or [])


_states: dict[int, WorkerState] = {}
#: Engines a forked child inherited (see ``WorkerState._forget_engine``).
_INHERITED_ENGINES: list[Engine] = []


def state_of(app: Celery) -> WorkerState:
    """The WorkerState of ``app``, made on first use."""
    state = _states.get(id(app))
    if state is None:
        state = _states[id(app)] = WorkerState(app)
    return state


def all_states() -> list[WorkerState]:
    """Every WorkerState of this process."""
    return list(_states.values())
