"""The embedded broker: kombu's filesystem transport, with messages written atomically,
and polled often but cheaply.

kombu writes a message file in place, so a worker listing the folder can take a file
that is still empty and fail to decode it. Here each message is written under a name
no reader matches, then renamed into place (rename is atomic on one filesystem).

kombu lists (and sorts) the whole folder at every poll of every queue. Here a poll first
reads the folder's modification time, one ``stat`` for all the queues it polls: a message
arriving (or leaving) renames a file in or out, which changes it, so a folder unchanged
since a queue's last listing holds nothing new for it. The kernel stamps that time from
a coarse clock (a tick is a few milliseconds), so two changes within one tick can share a
stamp: while the stamp is younger than ``SETTLE_NS`` the folder is listed at every poll
regardless, and a change made in the same tick as a listing is still seen by a later one.
That makes a short polling interval cheap when idle (see
celery_app.FILESYSTEM_POLLING_INTERVAL_S).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

ALIAS = "runpackfs"
#: For this long after the folder last changed, every poll lists it (see above): well over
#: a tick of the kernel's coarse clock, and many polling intervals.
SETTLE_NS = 100_000_000
#: Longest a worker waits for a message before it checks whether it was told to stop.
DRAIN_SLICE_S = 0.25


class Channel(filesystem.Channel):
    """A filesystem channel whose messages appear whole or not at all, and which lists
    the folder only when it may hold something new."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The folder's modification time (ns) when each queue last listed it.
        self._listed_at: dict[str, int | None] = {}
        self._folder = Path(self.data_folder_in)
        #: During a poll (``drain_events``), the folder's modification time as it began.
        self._polled: tuple[int | None] | None = None

    def _stamp(self) -> int | None:
        try:
            return self._folder.stat().st_mtime_ns
        except OSError:
            return None  # kombu's listing reports what is wrong

    def drain_events(self, timeout: Any = None, callback: Any = None) -> Any:
        """One poll of every queue consumed: one ``stat`` of the folder serves them all
        (a listing that finds a message ends the poll)."""
        self._polled = (self._stamp(),)
        try:
            return super().drain_events(timeout=timeout, callback=callback)
        finally:
            self._polled = None

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        stamp = self._stamp() if self._polled is None else self._polled[0]
        if (
            stamp is not None
            and self._listed_at.get(queue) == stamp
            and time.time_ns() - stamp > SETTLE_NS
        ):
            raise Empty()
        self._listed_at[queue] = stamp  # taken before listing: a later change differs
        return super()._get(queue)

    # kombu names the second parameter "message" in one base and "payload" in the other
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = Path(self.data_folder_out) / name
        partial = final.with_name(f"{name}.part")  # readers take only "*.<queue>.msg"
        try:
            partial.write_bytes(str_to_bytes(dumps(payload)))
            partial.replace(final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    """The filesystem transport with atomic writes."""

    Channel = Channel

    # the two bases of this class disagree on the signature; kombu calls it as below
    def drain_events(self, connection: Any, timeout: Any = None) -> Any:  # type: ignore[override]
        """Wait for a message for at most ``DRAIN_SLICE_S`` (when given a timeout).

        kombu polls until the timeout it is given, and a worker checks for a stop signal
        only between two such waits (Celery's loop for a polled transport waits 2 s), so a
        shorter wait lets a stopping worker see its signal sooner.
        """
        if timeout is not None:  # None waits for good, as kombu's does
            timeout = min(timeout, DRAIN_SLICE_S)
        return super().drain_events(connection, timeout=timeout)


def register() -> str:
    """Make ``runpackfs://`` name this transport in kombu; returns the URL scheme."""
    TRANSPORT_ALIASES.setdefault(ALIAS, f"{__name__}:Transport")
    return f"{ALIAS}://"
