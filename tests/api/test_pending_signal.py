"""PendingSignal on its own: who a wake-up wakes, and when a new poll may skip the table."""

from __future__ import annotations

import asyncio
import time

from runpack_api.pending import PendingSignal


def test_a_wake_up_wakes_the_oldest_waiters_of_its_type_only() -> None:
    async def scenario() -> list[bool]:
        signal = PendingSignal()
        with (
            signal.watching(["a"]) as first,
            signal.watching(["b"]) as other_type,
            signal.watching(["a", "b"]) as second,
        ):
            assert signal.wake("a", 1) == 1  # the oldest waiter for "a"
            assert signal.wake("a", 1) == 1  # then the next one
            assert signal.wake("a", 1) == 0  # nobody else waits for "a"
            assert signal.waiting == 1
            return [await watch.wait(0.01) for watch in (first, second, other_type)]

    assert asyncio.run(scenario()) == [True, True, False]


def test_count_zero_or_no_type_wakes_every_matching_waiter() -> None:
    async def scenario() -> tuple[int, int]:
        signal = PendingSignal()
        with signal.watching(["a"]), signal.watching(["a"]), signal.watching(["b"]):
            everyone_of_a = signal.wake("a", 0)
            everyone_left = signal.wake(None, 0)
        return everyone_of_a, everyone_left

    assert asyncio.run(scenario()) == (2, 1)


def test_a_wake_up_during_the_read_is_not_lost() -> None:
    async def scenario() -> bool:
        signal = PendingSignal()
        with signal.watching(["a"]) as watch:
            signal.notify("a")  # as if the job became pending while the table was read
            return await watch.wait(0.01)

    assert asyncio.run(scenario()) is True


def test_known_empty_holds_until_any_wake_up() -> None:
    signal = PendingSignal(poll_s=60)
    assert not signal.known_empty(["a"])  # nothing read yet
    signal._quiet = (signal._epoch, time.monotonic(), frozenset({"a", "b"}))
    assert signal.known_empty(["a"]) and signal.known_empty(["a", "b"])
    assert not signal.known_empty(["a", "c"])  # "c" was not read
    signal.wake("z", 1)  # a job of any type became pending somewhere
    assert not signal.known_empty(["a"])
