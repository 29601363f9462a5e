"""The SQLite log is checkpointed by a thread of the API process, not by the writers."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from runpack_tasks.jobstore.checkpoints import WalCheckpoints
from runpack_tasks.jobstore.db import create_db_engine
from runpack_tasks.jobstore.lifecycle import submit
from runpack_tasks.jobstore.schema import upgrade
from tests.support import unique_params, wait_for


def in_database_file(path: Path, job_id: str) -> bool:
    """Whether the job is in the database file itself (its log ignored)."""
    reader = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return reader.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is not None
    finally:
        reader.close()


def test_the_thread_copies_committed_writes_into_the_database_file(tmp_path: Path) -> None:
    # Given a SQLite database whose writers leave checkpoints to the thread
    path = tmp_path / "jobs.db"
    upgrade(f"sqlite:///{path}")
    engine = create_db_engine(f"sqlite:///{path}")
    checkpoints = WalCheckpoints.for_engine(engine)
    assert checkpoints is not None
    try:
        job = submit(engine, "wal", unique_params()).job
        # a few pages are far below the writers' own checkpoint threshold
        assert not in_database_file(path, job.id)
        # When the thread runs
        checkpoints.start()
        # Then the job reaches the database file
        wait_for(lambda: in_database_file(path, job.id), what="the job in the database file")
    finally:
        checkpoints.close()
        engine.dispose()
    assert checkpoints._thread is not None and not checkpoints._thread.is_alive()


def test_only_a_sqlite_file_gets_checkpoints(tmp_path: Path) -> None:
    assert WalCheckpoints.for_engine(sa.create_engine("sqlite://")) is None
    assert WalCheckpoints.for_engine(create_db_engine("postgresql://u@127.0.0.1/db")) is None
    found = WalCheckpoints.for_engine(create_db_engine(f"sqlite:///{tmp_path / 'a.db'}"))
    assert found is not None and found.path == str(tmp_path / "a.db")


def test_a_failing_checkpoint_is_logged_once_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoints = WalCheckpoints(str(tmp_path / "b.db"))
    closed = sqlite3.connect(tmp_path / "b.db")
    closed.close()
    with caplog.at_level(logging.WARNING, logger="runpack_tasks.jobstore.checkpoints"):
        assert [checkpoints.checkpoint(closed) for _ in range(3)] == [None, None, None]
    assert len(caplog.records) == 1 and "WAL checkpoint failed" in caplog.text
    # once one succeeds, the next failure is logged again
    working = sqlite3.connect(tmp_path / "b.db")
    try:
        assert checkpoints.checkpoint(working) is not None
    finally:
        working.close()
    with caplog.at_level(logging.WARNING, logger="runpack_tasks.jobstore.checkpoints"):
        checkpoints.checkpoint(closed)
    assert len(caplog.records) == 2
