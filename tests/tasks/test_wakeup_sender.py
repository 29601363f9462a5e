"""The wake-up sender: what piles up while it sends goes out as one batch, merged by job
type, through a real Redis and a real PostgreSQL."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from runpack_tasks.wakeups import PostgresWakeups, RedisWakeups, Wakeups, merged
from tests.support import postgres_backend, wait_for


def test_merged_adds_counts_per_type_and_zero_wakes_all() -> None:
    news = [("a", 1), ("b", 0), ("a", 2), ("b", 3), (None, 0), ("c", 4), ("c", 0)]
    assert merged(news) == [("a", 3), ("b", 0), (None, 0), ("c", 0)]


@pytest.fixture(params=["redis", "postgresql"])
def bus(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Wakeups, Wakeups]]:
    """A sender and a listener on the same Redis, or the same PostgreSQL database."""
    found = postgres_backend()
    if found is None:
        pytest.skip("RUNPACK_TEST_DATABASE_URL and RUNPACK_TEST_REDIS_URL are not set")
    with ExitStack() as stack:
        if request.param == "redis":
            assert found.redis_url is not None
            pair: tuple[Wakeups, Wakeups] = (
                RedisWakeups(found.redis_url),
                RedisWakeups(found.redis_url),
            )
        else:
            url = stack.enter_context(found.fresh_database(tmp_path))
            pair = PostgresWakeups(url), PostgresWakeups(url)
        yield pair
        for wakeups in pair:
            wakeups.close()


def test_what_piles_up_while_sending_goes_as_one_merged_batch(
    bus: tuple[Wakeups, Wakeups],
) -> None:
    sender, listener = bus
    # (another process on the same bus may send wake-ups meanwhile: this test's types are
    # its own, and only they are counted)
    alpha, beta = (f"{name}-{uuid.uuid4().hex[:8]}" for name in ("alpha", "beta"))
    heard: list[tuple[str | None, int]] = []
    subscribed = threading.Event()

    def deliver(job_type: str | None, count: int) -> None:
        if job_type is None and count == 0:
            subscribed.set()
        elif job_type in (alpha, beta):
            heard.append((job_type, count))

    listener.listen(deliver)
    assert subscribed.wait(10), "the listener did not subscribe"
    # Given a sender held in the middle of sending its first message
    sending, release = threading.Event(), threading.Event()
    send = sender._send

    def held(messages: list[str]) -> None:
        sending.set()
        release.wait(10)
        send(messages)

    sender._send = held  # type: ignore[method-assign]
    sender.publish(alpha, 1)
    assert sending.wait(10)
    # When 199 more of one type and 2 of another are published meanwhile
    for _ in range(199):
        sender.publish(alpha, 1)
    sender.publish(beta, 2)
    release.set()
    # Then the listener hears the first, then one message per type with the counts added up
    wait_for(lambda: len(heard) >= 3, timeout_s=10, what="the wake-ups")
    sender.close()
    assert heard == [(alpha, 1), (alpha, 199), (beta, 2)]


def test_the_redis_sender_sends_again_on_a_new_connection_after_losing_its_own() -> None:
    found = postgres_backend()
    if found is None or found.redis_url is None:
        pytest.skip("RUNPACK_TEST_DATABASE_URL and RUNPACK_TEST_REDIS_URL are not set")
    sender, listener = RedisWakeups(found.redis_url), RedisWakeups(found.redis_url)
    first, again = (f"{name}-{uuid.uuid4().hex[:8]}" for name in ("first", "again"))
    heard: list[tuple[str | None, int]] = []
    try:
        listener.listen(lambda job_type, count: heard.append((job_type, count)))
        wait_for(lambda: (None, 0) in heard, timeout_s=10, what="the listener to subscribe")
        sender.publish(first, 1)
        wait_for(lambda: (first, 1) in heard, timeout_s=10, what="the first wake-up")
        # Given the sender's connection broken under it (as a Redis restart would)
        sender._sending._sock.shutdown(socket.SHUT_RDWR)
        # When it publishes again, until a wake-up gets through
        deadline = time.monotonic() + 10
        while (again, 1) not in heard:
            assert time.monotonic() < deadline, f"no wake-up got through: {heard}"
            sender.publish(again, 1)
            wait_for(lambda: not sender._outbox.qsize(), timeout_s=10, what="the send")
            time.sleep(0.05)
        # Then the failed send cost at most that one message: later ones arrive
        assert heard.count((again, 1)) >= 1
    finally:
        sender.close()
        listener.close()


def test_redis_wake_ups_stay_within_their_database() -> None:
    found = postgres_backend()
    if found is None or found.redis_url is None:
        pytest.skip("RUNPACK_TEST_DATABASE_URL and RUNPACK_TEST_REDIS_URL are not set")
    # Given two deployments on two databases of one Redis server (pub/sub writes no key),
    # each with a sending and a listening process (a process skips its own wake-ups)
    parts = urlsplit(found.redis_url)
    other_url = urlunsplit(parts._replace(path=f"/{int(parts.path.strip('/') or 0) + 8}"))
    urls = {"ours": found.redis_url, "theirs": other_url}
    senders = {name: RedisWakeups(url) for name, url in urls.items()}
    listeners = {name: RedisWakeups(url) for name, url in urls.items()}
    types = {name: f"{name}-{uuid.uuid4().hex[:8]}" for name in urls}
    heard: dict[str, list[str | None]] = {name: [] for name in urls}
    try:
        for name, listener in listeners.items():
            listener.listen(lambda t, _n, name=name: heard[name].append(t))  # type: ignore[misc]
        wait_for(
            lambda: all(None in kinds for kinds in heard.values()),
            timeout_s=10,
            what="both listeners to subscribe",
        )
        # When one deployment announces a job, and then the other
        for name in ("ours", "theirs"):
            senders[name].publish(types[name], 1)
            wait_for(
                lambda name=name: types[name] in heard[name],  # type: ignore[misc]
                timeout_s=10,
                what=f"{name} wake-up",
            )
        # Then each heard only its own
        assert types["ours"] not in heard["theirs"]
        assert types["theirs"] not in heard["ours"]
    finally:
        for bus in (*senders.values(), *listeners.values()):
            bus.close()
