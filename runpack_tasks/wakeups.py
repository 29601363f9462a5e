"""Telling every API process that jobs became pending, so their long-polling runners wake.

A message names a job type (or none: "look at every type") and how many jobs became
pending. It goes through Redis pub/sub when a Redis is configured (``RUNPACK_REDIS_URL``,
or a Redis broker), else PostgreSQL ``LISTEN/NOTIFY`` when the database is PostgreSQL; on
SQLite without Redis there is one API process and nothing to send. Delivery is at most
once (a listener reconnecting misses what was sent meanwhile, and says so by delivering a
wake-everyone message), so the API keeps a slow safety-net poll as well.

Sending never blocks the caller: messages go through a sender thread, which sends what
piled up while it was busy as one batch, merged by job type (counts added up), in one round
trip. Each process tags its messages and ignores its own echo, since it already woke its
own waiters.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from runpack_tasks.jobstore.db import create_db_engine, normalize_url
from runpack_tasks.settings import RunpackSettings

log = logging.getLogger(__name__)

#: The Redis pub/sub channel and the PostgreSQL notification channel.
CHANNEL = "runpack_pending"
#: How long a listener waits before connecting again after losing its connection.
RECONNECT_S = 1.0
#: ``Deliver(job_type, count)``: ``job_type`` None means any type.
Deliver = Callable[[str | None, int], None]


def encode(origin: str, job_type: str | None, count: int) -> str:
    """``origin|count|job_type`` (an empty type: any)."""
    return f"{origin}|{count}|{job_type or ''}"


def merged(news: list[tuple[str | None, int]]) -> list[tuple[str | None, int]]:
    """``(job_type, count)`` pairs with one per job type, counts added up; a count of 0
    (wake every waiter) stays 0."""
    counts: dict[str | None, int] = {}
    for job_type, count in news:
        before = counts.get(job_type)
        counts[job_type] = 0 if before == 0 or count == 0 else (before or 0) + count
    return list(counts.items())


def decode(message: str) -> tuple[str, str | None, int] | None:
    """``(origin, job_type, count)``, or None for a message that is not ours."""
    parts = message.split("|", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    origin, count, job_type = parts
    return origin, job_type or None, int(count)


class Wakeups:
    """The in-process kind (SQLite without Redis): there is no other process to tell."""

    kind = "local"

    def __init__(self) -> None:
        self.origin = secrets.token_hex(8)
        self._outbox: SimpleQueue[tuple[str | None, int] | None] = SimpleQueue()
        self._sender: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def publish(self, job_type: str | None, count: int = 1) -> None:
        """Tell the other processes that ``count`` jobs of ``job_type`` became pending."""
        if self.kind == "local" or self._closed.is_set():
            return
        self._outbox.put((job_type, count))
        if self._sender is None:
            with self._lock:
                if self._sender is None:
                    self._sender = threading.Thread(
                        target=self._send_loop, name="runpack-wakeup-sender", daemon=True
                    )
                    self._sender.start()

    def _send_loop(self) -> None:
        while (first := self._outbox.get()) is not None:
            news, stopping = [first], False
            while True:  # what else piled up meanwhile goes with it
                try:
                    item = self._outbox.get_nowait()
                except Empty:
                    break
                if item is None:
                    stopping = True
                    break
                news.append(item)
            messages = [encode(self.origin, *pair) for pair in merged(news)]
            try:
                self._send(messages)
            except Exception as exc:  # the safety-net poll finds the job anyway
                log.warning("could not send a wake-up (%s): %s", self.kind, exc)
            if stopping:
                return

    def _send(self, messages: list[str]) -> None:
        """Send messages in one round trip (the sender thread's only caller)."""

    def listen(self, deliver: Deliver) -> None:
        """Call ``deliver`` (from a listener thread) for every other process's message."""

    def _deliver_raw(self, deliver: Deliver, raw: str) -> None:
        decoded = decode(raw)
        if decoded is not None and decoded[0] != self.origin:
            deliver(decoded[1], decoded[2])

    def _start_listener(self, loop: Callable[[], None]) -> None:
        threading.Thread(target=loop, name=f"runpack-wakeup-{self.kind}", daemon=True).start()

    def close(self) -> None:
        """Send what is queued, then stop sending and listening."""
        self._closed.set()
        if self._sender is not None:
            self._outbox.put(None)
            self._sender.join(timeout=2)


class RedisWakeups(Wakeups):
    """Through Redis pub/sub."""

    kind = "redis"

    def __init__(self, url: str) -> None:
        super().__init__()
        import redis

        self._client = redis.Redis.from_url(url, socket_keepalive=True)
        #: Pub/sub spans a Redis server's databases: the channel names the database, so
        #: deployments sharing a server on databases of their own do not hear each other.
        database = self._client.connection_pool.connection_kwargs.get("db", 0)
        self.channel = f"{CHANNEL}:{database}"
        #: The sender thread's own connection, made at its first send. Commands written
        #: and replies read on it directly cost about 12 us of CPU a PUBLISH; through a
        #: client pipeline, 40 to 70.
        self._sending: Any = None

    def _send(self, messages: list[str]) -> None:
        if self._sending is None:
            self._sending = self._client.connection_pool.make_connection()
        connection = self._sending
        try:  # connects first if it is not (yet, or any more) connected
            connection.send_packed_command(
                connection.pack_commands([("PUBLISH", self.channel, m) for m in messages])
            )
            for _ in messages:
                connection.read_response()
        except BaseException:
            connection.disconnect()  # the next send starts on a fresh connection
            raise

    def listen(self, deliver: Deliver) -> None:
        def loop() -> None:
            while not self._closed.is_set():
                try:
                    connection: Any = self._client.connection_pool.make_connection()
                    try:
                        self._subscribed(connection, deliver)
                    finally:
                        connection.disconnect()
                except Exception as exc:
                    log.warning("wake-up listener lost Redis: %s", exc)
                    time.sleep(RECONNECT_S)

        self._start_listener(loop)

    def close(self) -> None:
        super().close()
        if self._sending is not None:
            self._sending.disconnect()

    def _subscribed(self, connection: Any, deliver: Deliver) -> None:
        """Subscribe on a connection of the listener's own and deliver what arrives on it
        until closed. Replies are read off the connection directly, without redis-py's
        ``PubSub`` bookkeeping around each read (its own echo is every message a process
        with no peer reads)."""
        import redis

        connection.send_command("SUBSCRIBE", self.channel)
        subscribed = False
        while not self._closed.is_set():
            try:  # a pub/sub message comes as a push (RESP3) or an array (RESP2) reply
                reply = connection.read_response(
                    timeout=1.0, push_request=True, disconnect_on_error=False
                )
            except redis.TimeoutError:  # nothing for a second: look at _closed again
                continue
            if not isinstance(reply, list) or len(reply) != 3:
                continue
            kind, _, data = reply
            if kind == b"subscribe" and not subscribed:
                subscribed = True
                deliver(None, 0)  # anything sent while not subscribed was missed
            elif kind == b"message" and isinstance(data, bytes):
                self._deliver_raw(deliver, data.decode(errors="replace"))


class PostgresWakeups(Wakeups):
    """Through PostgreSQL ``LISTEN/NOTIFY`` on the job store's database."""

    kind = "postgresql"

    def __init__(self, database_url: str) -> None:
        super().__init__()
        self._database_url = database_url
        self._engine = create_db_engine(database_url, pool_size=1)

    def _send(self, messages: list[str]) -> None:
        with self._engine.connect() as conn:  # delivered together, at the commit
            conn.execute(sa.select(*(sa.func.pg_notify(CHANNEL, m) for m in messages)))
            conn.commit()

    def _connect(self) -> Any:
        """A connection of its own (closed with the returned proxy), in autocommit, listening."""
        engine = sa.create_engine(normalize_url(self._database_url), poolclass=NullPool)
        proxy = engine.raw_connection()
        connection: Any = proxy.driver_connection
        connection.autocommit = True
        connection.execute(f"LISTEN {CHANNEL}")
        return proxy

    def listen(self, deliver: Deliver) -> None:
        def loop() -> None:
            while not self._closed.is_set():
                try:
                    proxy = self._connect()
                    deliver(None, 0)  # anything sent while not listening was missed
                    try:
                        while not self._closed.is_set():
                            for notify in proxy.driver_connection.notifies(timeout=1.0):
                                self._deliver_raw(deliver, notify.payload)
                    finally:
                        proxy.invalidate()  # closed as is: a lost one cannot be reset
                except Exception as exc:
                    log.warning("wake-up listener lost PostgreSQL: %s", exc)
                    time.sleep(RECONNECT_S)

        self._start_listener(loop)

    def close(self) -> None:
        super().close()
        self._engine.dispose()


def wakeups_for(settings: RunpackSettings) -> Wakeups:
    """Redis when one is configured, else PostgreSQL when the database is, else local."""
    if (redis_url := settings.rate_limit_storage_url) is not None:
        return RedisWakeups(redis_url)
    if make_url(settings.database_url).get_backend_name() == "postgresql":
        return PostgresWakeups(settings.database_url)
    return Wakeups()
