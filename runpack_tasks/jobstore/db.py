"""Database engines for SQLite (WAL, busy timeout) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

SQLITE_BUSY_TIMEOUT_MS = 30_000


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
    cursor.close()
