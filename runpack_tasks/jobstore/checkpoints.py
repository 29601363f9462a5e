"""Checkpoints a SQLite database's write-ahead log from a thread of its own.

Left to itself, SQLite checkpoints in the connection whose commit takes the log past
``wal_autocheckpoint`` pages: that writer copies the pages into the database file and
syncs both files before its commit returns, and every submit queued behind it waits.
Here one thread of the API process checkpoints every ``interval_s`` (``PASSIVE``: it never
blocks a reader or a writer), so the log stays short and no writer checkpoints unless this
thread falls behind (the connections' ``wal_autocheckpoint`` stays the backstop).
"""

from __future__ import annotations

import logging
import sqlite3
import threading

from sqlalchemy import Engine

from runpack_tasks.jobstore.db import SQLITE_BUSY_TIMEOUT_MS

log = logging.getLogger(__name__)

#: How often the log is checkpointed: a few batches' pages at a time, each page once
#: however often it was written meanwhile.
CHECKPOINT_INTERVAL_S = 0.1


class WalCheckpoints:
    """A thread checkpointing one SQLite database file until ``close``."""

    def __init__(self, path: str, interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        self.path = path
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing: str | None = None  # the error last logged, until a checkpoint succeeds

    @classmethod
    def for_engine(cls, engine: Engine) -> WalCheckpoints | None:
        """Checkpoints for the engine's database: None unless it is a SQLite file."""
        database = engine.url.database
        if engine.dialect.name != "sqlite" or not database or database == ":memory:":
            return None
        return cls(database)

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="runpack-wal-checkpoints", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        connection = sqlite3.connect(
            self.path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, check_same_thread=False
        )
        try:
            while not self._stop.wait(self.interval_s):
                self.checkpoint(connection)
        finally:
            connection.close()

    def checkpoint(self, connection: sqlite3.Connection) -> tuple[int, int, int] | None:
        """One ``PASSIVE`` checkpoint: (busy, frames in the log, frames checkpointed), or
        None when it failed (another process's checkpoint running, say): logged once until
        one succeeds or the error changes; the next one tries again."""
        try:
            busy, logged, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            if str(exc) != self._failing:
                log.warning("WAL checkpoint failed (tried every %g s): %s", self.interval_s, exc)
                self._failing = str(exc)
            return None
        self._failing = None
        return busy, logged, copied

    def close(self) -> None:
        """Stop the thread after its current checkpoint."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
