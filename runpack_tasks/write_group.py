"""Group commit for the threads of one process: concurrent callers share one write.

A worker with a threads pool runs several jobs in one process, and each job's
claim and completion is one committed statement. Here a caller hands its item to a
``WriteGroup``: if no write is running, the caller writes everything queued by then, its
own item among them, with one call of ``store`` (a multi-row statement); otherwise it
queues, and what queues during one write is the next group, written by the first caller
in it. Nothing waits on purpose: a lone caller (a prefork process runs one task at a
time) writes its own item at once, alone.

``store`` answers each item in order; a group whose write fails as a whole is stored again
item by item (``store_each``), so an error reaches only the caller it belongs to.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
#: Most items one write takes.
MAX_GROUP = 1000


def store_each(
    store: Callable[[list[Item]], list[Result]], items: list[Item]
) -> list[Result | Exception]:
    """``store(items)``; if that raises for several items, each stored alone, its answer or
    its exception in its place."""
    try:
        return list(store(items))
    except Exception as exc:
        if len(items) == 1:
            return [exc]
    answers: list[Result | Exception] = []
    for item in items:
        try:
            answers.extend(store([item]))
        except Exception as exc:
            answers.append(exc)
    return answers


class _Waiting(Generic[Item, Result]):
    """One caller's item, and its answer once written. ``done`` is set, for a caller that
    waits, when its answer is in, or when it is its ``turn`` to write the next group."""

    __slots__ = ("answer", "done", "item", "turn")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.done: threading.Event | None = None
        self.answer: Result | Exception | None = None
        self.turn = False


class WriteGroup(Generic[Item, Result]):
    """Items of concurrent threads, stored in groups by ``store``; each caller gets its own
    item's answer (or its exception, raised).

    One write runs at a time. Its writer is a caller: the one that found no write running,
    then, while callers keep coming, the first of those who queued during the write before,
    so that no caller writes for the others for longer than one write.
    """

    def __init__(self, store: Callable[[list[Item]], list[Result]]) -> None:
        self._store = store
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        """A new group (also in a forked child: the parent's threads are not there)."""
        self._lock = threading.Lock()
        self._queued: list[_Waiting[Item, Result]] = []
        self._writing = False
        #: Writes made, and items they stored (for the tests and the curious).
        self.writes = 0
        self.items = 0

    def submit(self, item: Item) -> Result:
        """Store ``item`` with whatever else is queued; its answer, or raise its exception."""
        waiting: _Waiting[Item, Result] = _Waiting(item)
        with self._lock:
            self._queued.append(waiting)
            if self._writing:
                waiting.done = threading.Event()
            self._writing = True
        if waiting.done is not None:
            waiting.done.wait()
        if waiting.done is None or waiting.turn:
            self._write()  # the group this caller heads
        if isinstance(waiting.answer, Exception):
            raise waiting.answer
        return waiting.answer  # type: ignore[return-value]

    def _write(self) -> None:
        """Write the queued items (up to MAX_GROUP) as one group, answer them, and hand
        the next write to the first caller queued meanwhile."""
        with self._lock:
            group, self._queued = self._queued[:MAX_GROUP], self._queued[MAX_GROUP:]
        answers: list[Result | Exception] = [
            RuntimeError("the group's write was interrupted")
        ] * len(group)
        try:
            answers = store_each(self._store, [waiting.item for waiting in group])
        finally:
            with self._lock:
                self.writes += 1
                self.items += len(group)
                following = self._queued[0] if self._queued else None
                self._writing = following is not None
            for waiting, answer in zip(group, answers, strict=True):
                waiting.answer = answer
                if waiting.done is not None:
                    waiting.done.set()
            if following is not None and following.done is not None:
                following.turn = True
                following.done.set()
