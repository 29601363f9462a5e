"""Fixtures of the modules that run HTTP runners against a real ``runpack api``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import Cluster, ServerProcess, cluster_around


@pytest.fixture(scope="module")
def http_cluster(live_server: ServerProcess) -> Iterator[Cluster]:
    """`runpack api` and beat, no Celery worker, for this module."""
    with cluster_around(live_server, workers=0) as cluster:
        yield cluster


@pytest.fixture
def http_only(http_cluster: Cluster) -> Iterator[Cluster]:
    """The module's cluster; runners and workers a test starts are killed after it."""
    started_before = len(http_cluster.processes)
    yield http_cluster
    for process in http_cluster.processes[started_before:]:
        if process.poll() is None:
            http_cluster.kill(process)
