"""Test helpers: fresh databases, a real API server process on loopback, waiting with deadlines."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import sqlalchemy as sa

from runpack_tasks.jobstore.db import create_db_engine, normalize_url
from runpack_tasks.jobstore.schema import upgrade

T = TypeVar("T")

IN_CI = os.environ.get("CI", "").lower() == "true"
TEST_DATABASE_URL = os.environ.get("RUNPACK_TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("RUNPACK_TEST_REDIS_URL")


def wait_for(
    condition: Callable[[], T],
    timeout_s: float = 10.0,
    interval_s: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except Exception as exc:  # the thing waited for may not answer yet
            last = exc
        else:
            if last:
                return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})")


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Backend:
    """Where a test's data lives: the embedded default, or PostgreSQL + Redis."""

    name: str
    base_database_url: str | None
    redis_url: str | None

    @contextmanager
    def fresh_database(self, tmp_dir: Path) -> Iterator[str]:
        """A new, migrated database of this backend, dropped afterwards."""
        if self.base_database_url is None:
            url = f"sqlite:///{tmp_dir / f'runpack-{uuid.uuid4().hex[:8]}.db'}"
            upgrade(url)
            yield url
            return
        name = f"runpack_test_{uuid.uuid4().hex[:12]}"
        admin = create_db_engine(self.base_database_url, pool_size=1)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = normalize_url(self.base_database_url).set(database=name)
        url_text = url.render_as_string(hide_password=False)
        try:
            upgrade(url_text)
            yield url_text
        finally:
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


EMBEDDED = Backend("embedded", None, None)


def postgres_backend() -> Backend | None:
    """PostgreSQL + Redis from RUNPACK_TEST_DATABASE_URL / RUNPACK_TEST_REDIS_URL, if set."""
    if not TEST_DATABASE_URL or not TEST_REDIS_URL:
        return None
    return Backend("postgres", TEST_DATABASE_URL, TEST_REDIS_URL)


@dataclass
class Keys:
    """The three API keys of one server."""

    submit: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    runner: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    admin: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    def env(self) -> dict[str, str]:
        """As RUNPACK_* variables."""
        return {
            "RUNPACK_SUBMIT_API_KEY": self.submit,
            "RUNPACK_RUNNER_API_KEY": self.runner,
            "RUNPACK_ADMIN_API_KEY": self.admin,
        }


GENEROUS_RATES = {
    "RUNPACK_RATE_SUBMIT": "100000/minute",
    "RUNPACK_RATE_STATUS": "100000/minute",
    "RUNPACK_RATE_RUNNER": "100000/minute",
    "RUNPACK_RATE_ADMIN": "100000/minute",
}


@dataclass
class ServerProcess:
    """``runpack api`` running as a real process on a loopback port."""

    url: str
    database_url: str
    keys: Keys
    process: subprocess.Popen[bytes]
    log_path: Path

    def headers(self, role: str, runner_id: str | None = None) -> dict[str, str]:
        """Authorization (and X-Runner-ID) headers for ``role``."""
        headers = {"Authorization": f"Bearer {getattr(self.keys, role)}"}
        if runner_id is not None:
            headers["X-Runner-ID"] = runner_id
        return headers

    def client(self, role: str, runner_id: str | None = None, **kwargs: Any) -> httpx.Client:
        """An HTTP client speaking to this server as ``role``."""
        return httpx.Client(
            base_url=self.url, headers=self.headers(role, runner_id), timeout=30, **kwargs
        )

    def log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Terminate the server and wait for it."""
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def server_env(
    database_url: str, keys: Keys, backend: Backend, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of a server process for ``backend``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPACK_")}
    env.update(keys.env())
    env.update(GENEROUS_RATES)
    env["RUNPACK_DATABASE_URL"] = database_url
    if backend.redis_url:
        env["RUNPACK_REDIS_URL"] = backend.redis_url
        env["RUNPACK_BROKER_URL"] = backend.redis_url
    env.update(extra or {})
    return env


def database_answers(url: str) -> bool:
    """Whether the server at ``url`` is up with its database (its broker may be down)."""
    return bool(httpx.get(f"{url}/health").json().get("database") == "ok")


@contextmanager
def running_server(
    database_url: str,
    backend: Backend,
    tmp_dir: Path,
    extra_env: dict[str, str] | None = None,
    keys: Keys | None = None,
) -> Iterator[ServerProcess]:
    """Start ``runpack api`` on a free port; yield once /health answers; stop it after."""
    keys = keys or Keys()
    port = free_port()
    log_path = tmp_dir / f"server-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runpack_api.cli",
                "api",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=server_env(database_url, keys, backend, extra_env),
            cwd=tmp_dir,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", database_url, keys, process, log_path)
    try:
        try:
            wait_for(
                lambda: process.poll() is None and database_answers(server.url),
                timeout_s=60,
                what=f"server on port {port}",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nserver log:\n{server.log()}") from None
        yield server
    finally:
        server.stop()


def unique_params(**extra: Any) -> dict[str, Any]:
    """Parameters no other test submits."""
    return {"test_id": uuid.uuid4().hex, **extra}
