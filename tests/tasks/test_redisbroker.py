"""The Redis transport Runpack's Celery app uses: kombu's, with one client per channel."""

from __future__ import annotations

import uuid

import pytest
from celery import Celery
from kombu import Queue

from runpack_tasks.celery_app import make_celery
from runpack_tasks.redisbroker import Channel, Transport
from runpack_tasks.settings import RunpackSettings
from tests.support import IN_CI, TEST_REDIS_URL


@pytest.fixture
def redis_url() -> str:
    if not TEST_REDIS_URL:
        if IN_CI:
            pytest.fail("RUNPACK_TEST_REDIS_URL is not set; CI must test Redis")
        pytest.skip("RUNPACK_TEST_REDIS_URL is not set")
    return TEST_REDIS_URL


def _app(redis_url: str) -> Celery:
    # no database is opened: the app only needs a URL
    return make_celery(RunpackSettings(broker_url=redis_url, database_url="sqlite://"))


def test_redis_urls_get_the_runpack_transport_and_keep_their_scheme(redis_url: str) -> None:
    app = _app(redis_url)
    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, Transport)
        assert isinstance(connection.default_channel, Channel)
        # Flower and the worker banner read the broker from this URI
        assert connection.as_uri().startswith("redis://")


def test_one_client_serves_every_synchronous_command_until_the_pool_changes(
    redis_url: str,
) -> None:
    app = _app(redis_url)
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        first = channel._create_client()
        assert channel._create_client() is first
        assert first.ping() is True
        assert channel._create_client(asynchronous=True) is not first
        channel._pool = None  # what kombu does after a connection error
        renewed = channel._create_client()
        assert renewed is not first
        assert renewed.connection_pool is channel.pool
        assert renewed.ping() is True


def test_messages_go_through_and_late_acks_clear_the_unacked_entries(redis_url: str) -> None:
    app = _app(redis_url)
    name = f"runpack.test.{uuid.uuid4().hex[:8]}"
    queue = Queue(name, routing_key=name)
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        queue(channel).declare()
        producer = connection.Producer(channel)
        for i in range(3):
            producer.publish({"i": i}, routing_key=name, serializer="json")
        client = channel._create_client()
        received = []
        for _ in range(3):
            message = queue(channel).get(no_ack=False)
            assert message is not None
            received.append(message.payload["i"])
            # held for redelivery until acknowledged (acks_late relies on this)
            assert client.hexists(channel.unacked_key, message.delivery_tag)
            message.ack()
            assert not client.hexists(channel.unacked_key, message.delivery_tag)
        assert received == [0, 1, 2]
        assert queue(channel).get() is None
        queue(channel).delete()
