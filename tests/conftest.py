"""Fixtures: every store and API test runs on the embedded default and on PostgreSQL + Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from runpack_tasks.jobstore.db import create_db_engine
from tests.cluster import install_example_plugin
from tests.support import EMBEDDED, IN_CI, Backend, ServerProcess, postgres_backend, running_server


@pytest.fixture(scope="session", params=["embedded", "postgres"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """The embedded default (SQLite), then PostgreSQL + Redis when configured."""
    if request.param == "embedded":
        return EMBEDDED
    found = postgres_backend()
    if found is None:
        message = "RUNPACK_TEST_DATABASE_URL and RUNPACK_TEST_REDIS_URL are not set"
        if IN_CI:
            pytest.fail(f"{message}; CI must test PostgreSQL + Redis")
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin package (job type ``tally``), pip-installed once for PYTHONPATH."""
    return install_example_plugin(tmp_path_factory.mktemp("plugins"))


@pytest.fixture
def database_url(backend: Backend, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    with backend.fresh_database(tmp_path) as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the test's fresh database."""
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def module_database_url(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh, migrated database shared by one module's tests (each uses its own rows)."""
    with backend.fresh_database(tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture(scope="module")
def server(
    backend: Backend, module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A real ``runpack api`` process on loopback, shared by one module's tests."""
    with running_server(module_database_url, backend, tmp_path_factory.mktemp("server")) as srv:
        yield srv


@pytest.fixture(scope="module")
def server_engine(module_database_url: str) -> Iterator[Engine]:
    """An engine on the module server's database, to check what requests changed."""
    engine = create_db_engine(module_database_url)
    yield engine
    engine.dispose()
