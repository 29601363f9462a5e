"""Group commit for threads: concurrent callers share writes, each gets its own answer."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from runpack_tasks.write_group import WriteGroup
from tests.support import wait_for


class GatedStore:
    """A store whose first write waits at a gate; it records the groups it was given."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.writers: list[str] = []  # the thread of each write
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.groups.append(list(items))
        self.writers.append(threading.current_thread().name)
        self.entered.set()
        self.gate.wait(timeout=10)
        if any(item < 0 for item in items):
            raise ValueError(f"negative item in {items}")
        return [item * 10 for item in items]


def behind_a_write(
    pool: ThreadPoolExecutor,
    group: WriteGroup[int, int],
    store: GatedStore,
    items: list[int],
    submit: Callable[[int], int] | None = None,
) -> list[Future[int]]:
    """``items[0]`` submitted and its write held at the store's gate, then each of the
    others queued behind it, in order; every caller's future."""
    submit = submit or group.submit
    futures = [pool.submit(submit, items[0])]
    assert store.entered.wait(timeout=10)
    for queued, item in enumerate(items[1:], start=1):
        futures.append(pool.submit(submit, item))
        wait_for(lambda n=queued: len(group._queued) == n, timeout_s=10, what="the caller")
    return futures


def test_callers_arriving_during_a_write_share_the_next_one() -> None:
    store = GatedStore()
    group: WriteGroup[int, int] = WriteGroup(store)
    with ThreadPoolExecutor(8) as pool:
        # Given a write in progress, and seven more callers arriving meanwhile
        first, *others = behind_a_write(pool, group, store, list(range(1, 9)))
        store.gate.set()
        # Then each gets its own answer
        assert first.result(timeout=10) == 10
        assert [future.result(timeout=10) for future in others] == [n * 10 for n in range(2, 9)]
    # And the seven were stored by one write
    assert store.groups == [[1], [2, 3, 4, 5, 6, 7, 8]]
    assert (group.writes, group.items) == (2, 8)


def test_a_lone_caller_writes_at_once_and_alone() -> None:
    store = GatedStore()
    store.gate.set()
    group: WriteGroup[int, int] = WriteGroup(store)
    assert [group.submit(n) for n in (1, 2)] == [10, 20]
    assert store.groups == [[1], [2]]


def test_an_item_s_error_reaches_only_its_caller() -> None:
    store = GatedStore()
    group: WriteGroup[int, int] = WriteGroup(store)
    with ThreadPoolExecutor(4) as pool:
        first, bad, good = behind_a_write(pool, group, store, [1, -1, 3])
        store.gate.set()
        assert first.result(timeout=10) == 10
        assert good.result(timeout=10) == 30
        with pytest.raises(ValueError, match="negative"):
            bad.result(timeout=10)
    # the group failed as a whole, then each item was stored alone
    assert store.groups == [[1], [-1, 3], [-1], [3]]


def test_the_next_group_is_written_by_its_first_caller_not_the_last_writer() -> None:
    # Given a write in progress, and two callers queued meanwhile
    store = GatedStore()
    group: WriteGroup[int, int] = WriteGroup(store)
    callers: dict[int, str] = {}

    def submit(n: int) -> int:
        callers[n] = threading.current_thread().name
        return group.submit(n)

    with ThreadPoolExecutor(3) as pool:
        futures = behind_a_write(pool, group, store, [1, 2, 3], submit)
        store.gate.set()
        assert [f.result(timeout=10) for f in futures] == [10, 20, 30]
    # Then the first caller wrote the first group, and the second caller the second
    assert store.groups == [[1], [2, 3]]
    assert store.writers == [callers[1], callers[2]]
