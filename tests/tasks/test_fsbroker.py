"""The embedded broker's channel: whole messages, and polls that list the folder only when
it may hold something new, without missing a message that arrives right after a listing."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from queue import Empty

import pytest
from kombu import Connection, Consumer, Producer, Queue
from kombu.transport import filesystem

from runpack_tasks import fsbroker

QUEUE = "q"


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[fsbroker.Channel]:
    folder = tmp_path / "queue"
    folder.mkdir()
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder)}
    with Connection(fsbroker.register(), transport_options=options) as connection:
        found = connection.default_channel
        assert isinstance(found, fsbroker.Channel)
        yield found


@pytest.fixture
def listings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every listing of the folder kombu's filesystem channel makes."""
    made: list[str] = []
    real = filesystem.os.listdir

    def listdir(path: str) -> list[str]:
        made.append(path)
        return real(path)

    monkeypatch.setattr(filesystem.os, "listdir", listdir)
    return made


def test_a_message_put_right_after_an_empty_poll_is_found_at_the_next(
    channel: fsbroker.Channel,
) -> None:
    for n in range(20):  # each within a tick of the listing before it, most likely
        with pytest.raises(Empty):
            channel._get(QUEUE)
        channel._put(QUEUE, {"n": n})
        assert channel._get(QUEUE) == {"n": n}


def test_an_unchanged_settled_folder_is_not_listed_again(
    channel: fsbroker.Channel, listings: list[str]
) -> None:
    channel._put(QUEUE, {"n": 1})
    assert channel._get(QUEUE) == {"n": 1}
    # once the folder's last change is older than the settling time
    time.sleep(fsbroker.SETTLE_NS / 1e9 + 0.05)
    with pytest.raises(Empty):
        channel._get(QUEUE)  # the first poll after the change lists it
    listed = len(listings)
    for _ in range(50):
        with pytest.raises(Empty):
            channel._get(QUEUE)
    assert len(listings) == listed
    # and a new message changes the folder, so the next poll lists and finds it
    channel._put(QUEUE, {"n": 2})
    assert channel._get(QUEUE) == {"n": 2}
    assert len(listings) == listed + 1


def test_each_queue_lists_the_folder_for_itself(channel: fsbroker.Channel) -> None:
    for queue in ("a", "b"):
        with pytest.raises(Empty):
            channel._get(queue)
    channel._put("b", {"for": "b"})
    time.sleep(fsbroker.SETTLE_NS / 1e9 + 0.05)
    with pytest.raises(Empty):
        channel._get("a")  # a lists the changed folder: nothing for a
    assert channel._get("b") == {"for": "b"}  # b has not listed it since it changed


def test_a_poll_of_every_queue_looks_at_the_folder_once(
    channel: fsbroker.Channel, listings: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[object] = []
    queues = [Queue(f"q{n}") for n in range(5)]
    Consumer(channel, queues, callbacks=[lambda body, _message: received.append(body)]).consume()
    time.sleep(fsbroker.SETTLE_NS / 1e9 + 0.05)
    with pytest.raises(Empty):
        channel.drain_events()  # each queue lists the settled folder once
    stats: list[Path] = []
    real_stat = Path.stat

    def stat(path: Path, **kwargs: bool) -> os.stat_result:
        stats.append(path)
        return real_stat(path, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    listed = len(listings)
    # When the five queues are polled again with nothing new
    with pytest.raises(Empty):
        channel.drain_events()
    # Then the folder was looked at once, and listed for none of them
    assert len(stats) == 1 and len(listings) == listed
    # And a message that arrives is found by the next poll
    Producer(channel).publish({"for": "q3"}, routing_key="q3")
    channel.drain_events()
    assert received == [{"for": "q3"}]


def test_a_long_wait_for_a_message_gives_up_after_a_slice(channel: fsbroker.Channel) -> None:
    # Given a consumer of an empty queue (a worker's, whose loop waits 2 s at a time and
    # looks for a stop signal only between two waits)
    Consumer(channel, [Queue(QUEUE)], callbacks=[lambda _body, _message: None]).consume()
    connection = channel.connection.client
    # When it waits for a message for up to a minute
    started = time.monotonic()
    with pytest.raises(socket.timeout):
        connection.drain_events(timeout=60)
    # Then it gives up after a slice, well short of the minute, so a stop is seen soon
    assert time.monotonic() - started < 30
