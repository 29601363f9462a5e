"""``runpack api`` as a real process on a loopback port, for tests where processes matter."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support import plain_http
from tests.support.backends import Backend
from tests.support.server import LOOPBACK, ApiServer, Keys, server_env
from tests.support.waiting import free_port, wait_for

#: How long a stopped server may take to finish its requests before it is killed. Open
#: long polls hold uvicorn's graceful shutdown for up to their whole wait; no test needs
#: that wait, so it is cut short.
STOP_GRACE_S = 3


@dataclass
class ServerProcess(ApiServer):
    """``runpack api`` running as a real process on a loopback port."""

    process: subprocess.Popen[bytes]
    log_path: Path
    #: The environment it was started with (a cluster's beat and workers share it).
    env: dict[str, str]
    tmp_dir: Path

    def transport(
        self, source: str | None, limits: httpx.Limits | None
    ) -> httpx.BaseTransport | None:
        """Real TCP; from the loopback address ``source`` when one is given."""
        if source is None:
            return None
        return httpx.HTTPTransport(
            local_address=source, limits=limits or httpx.Limits(), verify=plain_http.TLS
        )

    def log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM; SIGKILL if it has not finished within STOP_GRACE_S."""
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_runpack(*args: str, env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """``runpack <args>`` in a process group of its own (so a kill takes its children
    too), its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "runpack_api.cli", *args],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def database_answers(url: str) -> bool:
    """Whether the server at ``url`` is up with its database (its broker may be down)."""
    return bool(plain_http.get(f"{url}/health").json().get("database") == "ok")


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
    env = server_env(database_url, keys, backend, extra_env, tmp_dir)
    command = [sys.executable, "-m", "runpack_api.cli", "api", "--host", LOOPBACK]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env,
            cwd=tmp_dir,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(
        f"http://{LOOPBACK}:{port}", database_url, keys, process, log_path, env, tmp_dir
    )
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


def libraries_loaded(code: str, libraries: set[str]) -> list[str]:
    """Which of ``libraries`` (top-level package names) a new Python process has loaded
    once it ran ``code``."""
    script = f"import sys\n{code}\nprint(sorted({{m.split('.')[0] for m in sys.modules}}))\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return sorted(set(ast.literal_eval(done.stdout.strip().splitlines()[-1])) & libraries)
