"""Where a test's data lives: the embedded default (SQLite), or PostgreSQL + Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa

from runpack_tasks.jobstore.db import create_db_engine, normalize_url
from runpack_tasks.jobstore.schema import upgrade

IN_CI = os.environ.get("CI", "").lower() == "true"
TEST_DATABASE_URL = os.environ.get("RUNPACK_TEST_DATABASE_URL")


def _own_database(url: str | None) -> str | None:
    """``url`` for this test process: under pytest-xdist, worker ``gwN`` uses the Redis
    database N above the one given, so two workers' brokers never share a queue."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not url or not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    first = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{first + int(worker[2:])}"))


TEST_REDIS_URL = _own_database(os.environ.get("RUNPACK_TEST_REDIS_URL"))


@dataclass(frozen=True)
class Backend:
    """Where a test's data lives: the embedded default, or PostgreSQL + Redis."""

    name: str
    base_database_url: str | None
    redis_url: str | None

    @contextmanager
    def fresh_database(self, tmp_dir: Path) -> Iterator[str]:
        """A new, migrated database of this backend, dropped afterwards."""
        if self.base_database_url is None:
            url = f"sqlite:///{tmp_dir / f'runpack-{uuid.uuid4().hex[:8]}.db'}"
            upgrade(url)
            yield url
            return
        name = f"runpack_test_{uuid.uuid4().hex[:12]}"
        admin = create_db_engine(self.base_database_url, pool_size=1)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = normalize_url(self.base_database_url).set(database=name)
        url_text = url.render_as_string(hide_password=False)
        try:
            upgrade(url_text)
            yield url_text
        finally:
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


EMBEDDED = Backend("embedded", None, None)


def postgres_backend() -> Backend | None:
    """PostgreSQL + Redis from RUNPACK_TEST_DATABASE_URL / RUNPACK_TEST_REDIS_URL, if set."""
    if not TEST_DATABASE_URL or not TEST_REDIS_URL:
        return None
    return Backend("postgres", TEST_DATABASE_URL, TEST_REDIS_URL)
