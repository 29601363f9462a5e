"""A private PostgreSQL and Redis on free loopback ports, to restart, pause and flush.

Fault tests and the fault matrix (``bench/faults.py``) break these on purpose, so they are
never the machine's shared servers: each is started here, in a temporary folder.
PostgreSQL refuses to run as root, so as root ``initdb`` and ``pg_ctl`` run as the
``postgres`` user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.support.server import LOOPBACK
from tests.support.waiting import free_port, wait_for

#: The PostgreSQL user when this process is root (initdb refuses to run as root).
POSTGRES_USER = "postgres"


def _as_postgres() -> str | None:
    """The user to run PostgreSQL's programs as (None: this process's own)."""
    if os.geteuid() != 0:
        return None
    pwd.getpwnam(POSTGRES_USER)  # KeyError names the missing user
    return POSTGRES_USER


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid``, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            # the command may hold spaces and parentheses: fields follow the last ')'
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def signal_all(pids: list[int], signum: int) -> None:
    """Send ``signum`` to every pid still alive."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


class PrivatePostgres:
    """A PostgreSQL cluster of its own in ``folder``, on a free loopback port."""

    def __init__(self) -> None:
        # its own folder under the system's temporary folder, which the postgres user can
        # reach (a test's tmp_path is private to root)
        self.folder = Path(tempfile.mkdtemp(prefix="runpack-pg-"))
        self.data = self.folder / "pgdata"
        self.port = free_port()
        self._user = _as_postgres()
        self._bin = Path(shutil.which("pg_ctl") or "pg_ctl").resolve().parent
        #: The server's log (pg_ctl hands it the server's output, so no pipe stays open).
        self._log = str(self.folder / "postgres.log")

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [str(self._bin / program), *args],
            check=True,
            capture_output=True,
            user=self._user,
            timeout=120,
        )

    def url(self, database: str = "postgres") -> str:
        """The URL of ``database`` on this server."""
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/{database}"

    def start(self) -> None:
        """initdb (trust, loopback only) and start; returns once it accepts connections."""
        if self._user is not None:
            shutil.chown(self.folder, self._user)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = " ".join(
            (
                f"-p {self.port}",
                f"-k {self.folder}",
                f"-c listen_addresses={LOOPBACK}",
                "-c max_connections=400",
                # the faults are processes stopping, never the machine: skip the disk flushes
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
            )
        )
        self._options = options
        self.start_again()

    def start_again(self) -> None:
        """Start the server on its data (after ``shut_down``); returns once it answers."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", self._options, "-l", self._log, "-w", "start"
        )

    def shut_down(self) -> None:
        """``pg_ctl stop -m fast``, keeping its data."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def postmaster_pid(self) -> int:
        """The server's main process (from ``postmaster.pid``)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every session is cut; returns once it is back."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-l", self._log, "-w", "restart")

    def pause(self, seconds: float) -> None:
        """SIGSTOP the server and every backend for ``seconds``, then SIGCONT them."""
        main = self.postmaster_pid()
        pids = [main, *child_pids(main)]
        signal_all(pids, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            signal_all([main, *child_pids(main)], signal.SIGCONT)

    def stop(self) -> None:
        """Stop at once (no checkpoint) and delete its folder."""
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started PrivatePostgres, stopped and deleted afterwards."""
    server = PrivatePostgres()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class PrivateRedis:
    """A ``redis-server`` without persistence, on a free loopback port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL of its database 0."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> None:
        """Start it; returns once it answers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                "redis-server",
                *("--bind", LOOPBACK, "--port", str(self.port), "--dir", str(self.folder)),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        try:
            wait_for(client.ping, timeout_s=30, what=f"redis-server on port {self.port}")
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL it: with no persistence, every message and key is gone."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        """Kill it and start an empty one on the same port."""
        self.kill()
        self.start()

    def pause(self, seconds: float) -> None:
        """SIGSTOP it for ``seconds``, then SIGCONT."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            self.process.send_signal(signal.SIGCONT)

    def flush(self) -> None:
        """Empty it (it is this process's own)."""
        client = redis.Redis.from_url(self.url)
        try:
            client.flushall()
        finally:
            client.close()


@contextmanager
def private_redis_server(folder: Path) -> Iterator[PrivateRedis]:
    """A started PrivateRedis, killed afterwards."""
    server = PrivateRedis(folder)
    server.start()
    try:
        yield server
    finally:
        server.kill()
