"""Database engines for SQLite (WAL, busy timeout) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)
T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: WAL pages after which a commit checkpoints them into the database file (SQLite's default
#: is 1,000). A write of 1,000 jobs leaves about that many pages (each new hash lands on its
#: own page of the unique index), so at the default every such write also copied them
#: back and synced both files, and the next write dirtied mostly the same pages again: two
#: thirds of a batch's time in the database. The API process checkpoints from a thread of
#: its own (``checkpoints.py``), so its writers reach this only if that thread falls behind;
#: the other processes write little. The WAL stays under about 16 MB (4 KB pages).
SQLITE_WAL_CHECKPOINT_PAGES = 4_000


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def normalize_url(database_url: str) -> URL:
    """Give PostgreSQL URLs the psycopg 3 driver, whatever driver they name."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url


def create_db_engine(database_url: str, *, pool_size: int = 10) -> Engine:
    """An engine for ``database_url``; SQLite gets WAL and a busy timeout on every connection."""
    url = normalize_url(database_url)
    common: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
    if url.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
            max_overflow=pool_size,
            **common,
        )
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    # No pre-ping: it costs a round trip per checkout. After a database restart the first
    # statement to meet a stale connection renews the pool (statements.py sends it again;
    # through SQLAlchemy that one statement fails), and recycling bounds their age.
    return create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800, **common
    )


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_CHECKPOINT_PAGES}")
    cursor.close()


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says PostgreSQL could not be reached or ended the session (a
    restart, an outage), rather than that a statement was wrong."""
    # psycopg is loaded by the first PostgreSQL engine: a process without one (SQLite)
    # neither imports it (a tenth of a second at start) nor can meet its errors
    psycopg = sys.modules.get("psycopg")
    unreachable = psycopg.OperationalError if psycopg is not None else ()
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated) or isinstance(exc.orig, unreachable)
    return isinstance(exc, unreachable)


def until_stored(
    write: Callable[[], T],
    give_up_after_s: float,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``write()``, tried again while the database is unavailable (with backoff, from 0.1 s
    to 1 s) for up to ``give_up_after_s``; then, or on any other error, it raises.

    For a state transition, which is one conditional write: if a try that seemed to fail
    did go through, the next finds the state changed and returns what a lost race does.
    """
    deadline = time.monotonic() + give_up_after_s
    delay_s = 0.1
    while True:
        try:
            return write()
        except Exception as exc:
            if not database_unavailable(exc) or time.monotonic() + delay_s > deadline:
                raise
            log.warning("database unavailable, %s again in %.1f s: %s", what, delay_s, exc)
        sleep(delay_s)
        delay_s = min(1.0, delay_s * 2)
