"""Fixtures: every store and API test runs on the embedded default and on PostgreSQL + Redis.

Two tiers of API server: ``server`` serves the app in this process (contract tests, what
the HTTP API answers); ``live_server`` is a real ``runpack api`` process, for tests where
processes are the point (HTTP runners, the CLI, Celery workers, beat, faults).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy import Engine

from runpack_tasks.jobstore.db import create_db_engine
from tests.support import (
    EMBEDDED,
    IN_CI,
    Backend,
    InProcessServer,
    ServerProcess,
    cluster_variables,
    install_example_plugin_once,
    postgres_backend,
    running_server,
    serving_in_process,
)
from tests.support.scheduling import BackendScopes, longest_first

#: Property tests: 200 examples on every run; HYPOTHESIS_PROFILE=thorough tries 2000.
settings.register_profile("quick", max_examples=200)
settings.register_profile("thorough", max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))


@pytest.hookimpl(trylast=True)  # after pytest grouped the tests by backend
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    longest_first(items)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> BackendScopes:
    return BackendScopes(config, log)


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
    """The example plugin package (job type ``tally``), pip-installed once per test run for
    PYTHONPATH: under pytest-xdist, into the run's folder that all its workers share (each
    worker's base folder is in it), by the first worker to need it."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return install_example_plugin_once(shared)


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
) -> Iterator[InProcessServer]:
    """The API app served in this process, shared by one module's tests."""
    tmp_dir = tmp_path_factory.mktemp("server")
    with serving_in_process(module_database_url, backend, tmp_dir) as srv:
        yield srv


@pytest.fixture(scope="module")
def live_server_env() -> dict[str, str]:
    """Variables a module gives its live server and the cluster around it (none here;
    a module may override this fixture)."""
    return {}


@pytest.fixture(scope="module")
def live_server(
    backend: Backend,
    module_database_url: str,
    plugin_dir: Path,
    live_server_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    """A real ``runpack api`` process on loopback, shared by one module's tests, set up to
    be a cluster's API: the example plugin importable, fast recovery (``cluster_around``)."""
    tmp_dir = tmp_path_factory.mktemp("live")
    extra = cluster_variables(backend, tmp_dir, plugin_dir, live_server_env)
    with running_server(module_database_url, backend, tmp_dir, extra) as srv:
        yield srv


@pytest.fixture(scope="module")
def server_engine(module_database_url: str) -> Iterator[Engine]:
    """An engine on the module server's database, to check what requests changed."""
    engine = create_db_engine(module_database_url)
    yield engine
    engine.dispose()
