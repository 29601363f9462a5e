"""The Celery tests that matter most, on RabbitMQ: jobs run, a worker killed mid-job loses
nothing, and beat republishes what a purged queue lost (reading queue depth over AMQP).

PostgreSQL without Redis beside RabbitMQ, in a vhost of the module's own. The tests
imported from test_celery_execution run here again against this module's cluster.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kombu import Connection

from runpack_tasks.celery_app import make_celery
from runpack_tasks.maintenance import queue_depth
from runpack_tasks.routing import queue_for
from runpack_tasks.settings import RunpackSettings
from tests.support import IN_CI, Backend, Cluster, ServerProcess, cluster_around, wait_for
from tests.support.backends import postgres_backend
from tests.support.rabbitmq import rabbitmq_available, rabbitmq_vhost
from tests.tasks.test_celery_execution import (
    test_a_killed_worker_does_not_lose_its_job,
    test_hello_world_completes_and_its_result_is_served_from_cache,
    workers,
)

__all__ = [
    "test_a_killed_worker_does_not_lose_its_job",
    "test_hello_world_completes_and_its_result_is_served_from_cache",
]


@pytest.fixture(scope="module")
def backend() -> Backend:
    """PostgreSQL alone: RabbitMQ is the broker, wake-ups go through LISTEN/NOTIFY."""
    found = postgres_backend()
    if found is None or not rabbitmq_available():
        message = "needs RUNPACK_TEST_DATABASE_URL and a RabbitMQ on 127.0.0.1:5672"
        if IN_CI:
            pytest.fail(f"{message}; CI must test RabbitMQ")
        pytest.skip(message)
    return Backend("postgres-rabbitmq", found.base_database_url, None)


@pytest.fixture(scope="module")
def live_server_env(backend: Backend) -> Iterator[dict[str, str]]:
    with rabbitmq_vhost() as url:
        yield {"RUNPACK_BROKER_URL": url}


@pytest.fixture(scope="module")
def cluster(live_server: ServerProcess) -> Iterator[Cluster]:
    with cluster_around(live_server) as running:
        yield running


def test_beat_reads_queue_depth_and_republishes_a_purged_queue(cluster: Cluster) -> None:
    # Given no live worker (one crashed, so messages are still sent) and 20 jobs published
    for process in workers(cluster):
        cluster.kill(process)
    ids = [cluster.submit("noop", {"n": uuid.uuid4().hex}).json()["job_id"] for _ in range(20)]
    wait_for(lambda: all(cluster.job(i)["published_at"] for i in ids), what="publication")
    app = make_celery(RunpackSettings(broker_url=cluster.broker_url))
    assert wait_for(lambda: queue_depth(app, "noop") >= 20, what="the messages queued")

    # When the queue loses every message
    with Connection(cluster.broker_url) as conn:
        assert conn.default_channel.queue_purge(queue_for("noop")) >= 20
    assert queue_depth(app, "noop") == 0

    # Then beat counts them lost and sends them again, and a new worker completes all 20
    assert wait_for(lambda: queue_depth(app, "noop") >= 20, timeout_s=30, what="republication")
    cluster.start_worker()
    for job_id in ids:
        assert cluster.wait_for_status(job_id, "completed", timeout_s=90)["status"] == "completed"


def test_queue_depth_of_a_queue_never_declared_is_zero(cluster: Cluster) -> None:
    app = make_celery(RunpackSettings(broker_url=cluster.broker_url))
    assert queue_depth(app, f"never-{uuid.uuid4().hex[:8]}") == 0
