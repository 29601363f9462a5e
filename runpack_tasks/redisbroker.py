"""kombu's Redis transport, with one client per channel for its synchronous commands.

kombu's Redis channel builds a new ``redis.Redis`` for every command it sends outside
its consuming loop: each publish, each late ack, each message it marks unacknowledged.
With redis-py 8 building one costs about 0.1 ms of CPU, a fifth of a worker's main
process per job and a tenth of the API's per submit. A client only borrows connections
from the channel's pool, so one client serves every thread; it is made again whenever the
channel replaces its pool (after a connection error).

A channel closed after its connection let go of the transport (a Celery worker losing
its broker, then closing) raises a connection error instead of kombu's AttributeError,
which stopped the worker.

``register`` makes kombu's ``redis`` and ``rediss`` schemes name this transport in the
process (``make_celery`` calls it), so broker URLs keep their scheme and Flower reads the
broker as usual.
"""

from __future__ import annotations

import threading
from typing import Any

import redis as redis_py
from kombu.transport import TRANSPORT_ALIASES, redis

SCHEMES = ("redis", "rediss")


class Channel(redis.Channel):
    """A Redis channel that reuses one client for its synchronous commands."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._sync_client: tuple[Any, Any] | None = None  # (pool, client)
        self._sync_client_lock = threading.Lock()
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]

    def _create_client(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            # The kombu connection let go of this transport (a Celery worker does when its
            # broker is lost) while a channel was still to close: closing it tries to give
            # its unacknowledged messages back, and kombu would fail with an AttributeError,
            # which stops the worker ("Unrecoverable error"). A connection error is what
            # kombu ignores there; the messages stay for redelivery, and beat republishes
            # what is lost.
            raise redis_py.ConnectionError("the broker connection is closed")
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        pool = self.pool
        made = self._sync_client
        if made is None or made[0] is not pool:
            with self._sync_client_lock:
                made = self._sync_client
                if made is None or made[0] is not pool:
                    made = (pool, super()._create_client())  # type: ignore[no-untyped-call]
                    self._sync_client = made
        return made[1]


class Transport(redis.Transport):
    """kombu's Redis transport with ``Channel``."""

    Channel = Channel


def register() -> None:
    """Have ``redis://`` and ``rediss://`` URLs use this transport in this process."""
    for scheme in SCHEMES:
        TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
