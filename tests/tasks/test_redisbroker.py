"""The Redis transport Runpack's Celery app uses: kombu's, with one client per channel."""

from __future__ import annotations

import hashlib
import inspect
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery
from kombu import Queue
from kombu.transport import redis as kombu_redis

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


#: The SHA-256 of the source of what ``redisbroker.Channel`` builds on, as of the kombu
#: version pyproject.toml pins.
KOMBU_SOURCES: dict[str, tuple[Callable[..., Any], str]] = {
    "Channel._create_client": (
        kombu_redis.Channel._create_client,
        "dae92bc4075dafb9b1a1ebd3f72cc7ed3e1bfe3ec1f840a1b1ccdfc6a67deb4d",
    ),
    "Channel.pool": (
        kombu_redis.Channel.pool.fget,
        "5a99b1533403c64dba7ef6612963e14c1e9ecad0fe45e4df481ed9b5debb0319",
    ),
}


@pytest.mark.parametrize("name", KOMBU_SOURCES)
def test_the_kombu_code_the_channel_overrides_is_unchanged(name: str) -> None:
    method, recorded = KOMBU_SOURCES[name]
    found = hashlib.sha256(inspect.getsource(method).encode()).hexdigest()
    assert found == recorded, (
        f"kombu's redis {name} changed. runpack_tasks/redisbroker.py overrides "
        "Channel._create_client (a synchronous call returns one cached client, made again "
        "when Channel.pool returns a new pool) and relies on Channel.pool making a pool when "
        "_pool is None: re-check that the override still builds the client as kombu does "
        "(its arguments, e.g. credential_provider) and that kombu still drops _pool on "
        "connection errors, then record the new hash here and the kombu range in "
        f"pyproject.toml. New hash: {found}"
    )


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


def test_a_channel_closed_after_its_connection_let_go_does_not_stop_the_worker(
    redis_url: str,
) -> None:
    # Given a channel holding an unacknowledged message (a worker's, mid-task)
    app = _app(redis_url)
    name = f"runpack.test.{uuid.uuid4().hex[:8]}"
    queue = Queue(name, routing_key=name)
    with app.connection_for_write() as connection:
        channel = connection.channel()
        queue(channel).declare()
        connection.Producer(channel).publish({"i": 1}, routing_key=name, serializer="json")
        assert queue(channel).get(no_ack=False) is not None
        # When the connection lets go of the transport (what kombu's collect does after a
        # lost broker) before the channel is closed
        channel.connection.client = None
        # Then closing it is a connection error kombu ignores, not an AttributeError
        connection.maybe_close_channel(channel)
        assert channel.closed
    with app.connection_for_write() as connection:
        queue(connection.default_channel).delete()
