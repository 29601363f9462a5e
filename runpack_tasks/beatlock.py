"""The lock that lets one ``runpack beat`` work while any other idles.

Beat asks for the lock before every round. On PostgreSQL it is a session advisory lock on
a connection beat keeps open: PostgreSQL releases it the moment that session ends, so
when the working beat stops or dies (even by SIGKILL, whose socket the kernel closes) an
idle one takes over at its next round. On SQLite it is an exclusive ``flock`` on the file
``<database>.beat.lock`` beside the database, released by the kernel when the holder's
process ends (SQLite is one host's database, so its beats share that host). No Redis lock
is needed: every deployment has its database, and a lock there needs no expiry to tune.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import NullPool

from runpack_tasks.jobstore.db import normalize_url

log = logging.getLogger(__name__)

#: The advisory lock's key (any constant; advisory locks are per database).
ADVISORY_KEY = 0x52554E5041434B  # "RUNPACK"


class BeatLock:
    """A lock nobody else contends for (an in-memory SQLite database has one process)."""

    kind = "none"

    def held(self) -> bool:
        """Take the lock if it is free; whether this process holds it now."""
        return True

    def release(self) -> None:
        """Let another beat take over."""


class AdvisoryLock(BeatLock):
    """A PostgreSQL session advisory lock on a connection of its own."""

    kind = "PostgreSQL advisory lock"

    def __init__(self, database_url: str) -> None:
        self._engine = sa.create_engine(normalize_url(database_url), poolclass=NullPool)
        self._conn: Connection | None = None

    def held(self) -> bool:
        if self._conn is not None:
            try:  # the session that holds it is still alive
                self._conn.execute(sa.text("SELECT 1"))
                return True
            except sa.exc.DBAPIError as exc:
                log.warning("lost the beat lock's connection: %s", exc)
                self.release()
        try:
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            taken = conn.execute(sa.select(sa.func.pg_try_advisory_lock(ADVISORY_KEY))).scalar_one()
        except sa.exc.DBAPIError as exc:
            log.warning("cannot reach the database for the beat lock: %s", exc)
            return False
        if taken:
            self._conn = conn
            return True
        conn.close()
        return False

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sa.exc.DBAPIError):
                self._conn.close()  # ending the session releases the lock
            self._conn = None


class FileLock(BeatLock):
    """An exclusive ``flock`` on a file beside the SQLite database."""

    kind = "file lock"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def held(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the lock
            self._fd = None


def beat_lock_for(database_url: str) -> BeatLock:
    """The lock that fits the database."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        return AdvisoryLock(database_url)
    if url.database and url.database != ":memory:":
        return FileLock(Path(f"{url.database}.beat.lock").resolve())
    return BeatLock()
