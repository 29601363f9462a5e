"""Two ``runpack beat`` at once: one works, the other idles, and takes over when the first
dies (a PostgreSQL advisory lock, or a file lock beside a SQLite database)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from runpack_tasks.jobstore import lifecycle, runners
from runpack_tasks.jobstore.models import JOBS
from tests.support import Backend, Keys, server_env, unique_params, wait_for
from tests.support.cluster import FAST_RECOVERY

WORKING = "this beat does the maintenance"
IDLING = "idling"
REQUEUED = "1 requeued"


class Beat:
    def __init__(self, env: dict[str, str], tmp_path: Path, name: str) -> None:
        self.log_path = tmp_path / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "runpack_api.cli", "beat"],
                env=env,
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def beats(backend: Backend, database_url: str, tmp_path: Path) -> Iterator[tuple[Beat, Beat]]:
    env = server_env(database_url, Keys(), backend, FAST_RECOVERY, tmp_path)
    first = Beat(env, tmp_path, "first")
    try:
        wait_for(lambda: WORKING in first.log(), timeout_s=30, what="the first beat to work")
        second = Beat(env, tmp_path, "second")
        try:
            wait_for(lambda: IDLING in second.log(), timeout_s=30, what="the second to idle")
            yield first, second
        finally:
            second.kill()
    finally:
        first.kill()


def stale_claim(engine: Engine) -> str:
    """A claimed job whose runner stopped heartbeating a minute ago."""
    params = unique_params()
    job = lifecycle.submit(engine, "beatlock", params).job
    runner_id = runners.register(engine, "gone", ["beatlock"])
    assert lifecycle.claim(engine, job.id, runner_id) is not None
    with engine.begin() as conn:
        conn.execute(
            sa.update(JOBS)
            .where(JOBS.c.id == job.id)
            .values(last_heartbeat=JOBS.c.last_heartbeat - 60_000)
        )
    return job.id


def status_of(engine: Engine, job_id: str) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.select(JOBS.c.status).where(JOBS.c.id == job_id)).scalar_one())


def test_two_beats_one_works_and_the_other_takes_over_when_it_dies(
    beats: tuple[Beat, Beat], engine: Engine
) -> None:
    first, second = beats
    # Given two beats, a stale claim is requeued by the working one alone
    job_id = stale_claim(engine)
    wait_for(lambda: status_of(engine, job_id) == "pending", what="the stale claim requeued")
    wait_for(lambda: REQUEUED in first.log(), what="the working beat's report")
    assert REQUEUED not in second.log()
    assert WORKING not in second.log()
    # When the working beat is killed
    first.kill()
    # Then the idle one takes over within a few reap intervals (1 s here)
    wait_for(lambda: WORKING in second.log(), timeout_s=10, what="the second beat to take over")
    job_id = stale_claim(engine)
    wait_for(lambda: status_of(engine, job_id) == "pending", what="the next stale claim requeued")
    wait_for(lambda: REQUEUED in second.log(), what="the new working beat's report")
