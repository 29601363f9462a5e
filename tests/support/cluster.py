"""A whole Runpack on loopback for Celery tests: API, beat and workers as real processes."""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.backends import Backend
from tests.support.process import ServerProcess, running_server, start_runpack
from tests.support.server import Keys, server_env
from tests.support.waiting import wait_for

EXAMPLE_PLUGIN = Path(__file__).parents[2] / "examples" / "runpack-example-plugin"
#: Short enough that a killed worker's job is reaped within seconds.
FAST_RECOVERY = {"RUNPACK_HEARTBEAT_TIMEOUT_S": "4", "RUNPACK_REAP_INTERVAL_S": "1"}


def install_example_plugin(target: Path) -> Path:
    """pip-install the example plugin package into ``target`` (for PYTHONPATH)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(EXAMPLE_PLUGIN),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


def install_example_plugin_once(folder: Path) -> Path:
    """``install_example_plugin`` into ``folder/example-plugin`` unless a process did it
    already: the first to take the folder's lock installs, the others wait for it and take
    its install."""
    target = folder / "example-plugin"
    installed = target / "INSTALLED"
    with (folder / "example-plugin.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not installed.exists():
            install_example_plugin(target)
            installed.touch()
    return target


def broker_url_for(backend: Backend, tmp_dir: Path) -> str:
    """Redis beside PostgreSQL; the filesystem broker on the embedded default."""
    return backend.redis_url or f"filesystem://{tmp_dir / 'broker'}"


@dataclass
class Cluster:
    """API, beat and any number of workers sharing one database and broker."""

    server: ServerProcess
    env: dict[str, str]
    tmp_dir: Path
    broker_url: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_paths: dict[int, Path] = field(default_factory=dict)

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log_path = self.tmp_dir / f"{name}-{len(self.processes)}.log"
        process = start_runpack(*args, env=self.env, cwd=self.tmp_dir, log=log_path)
        self.processes.append(process)
        self.log_paths[process.pid] = log_path
        return process

    def start_worker(
        self,
        types: str = "hello_world,noop,tally",
        concurrency: int = 2,
        wait: bool = True,
        pool: str = "prefork",
    ) -> subprocess.Popen[bytes]:
        """A ``runpack worker`` in its own process group; waits until it is registered."""
        before = {r["runner_id"] for r in self.celery_runners()}
        process = self._spawn(
            "worker", "worker", "--types", types, "--concurrency", str(concurrency), "--pool", pool
        )
        if wait:
            wait_for(
                lambda: {r["runner_id"] for r in self.celery_runners() if r["is_active"]} - before,
                timeout_s=60,
                what="the worker to register",
            )
        return process

    def start_runner(
        self,
        types: str,
        state_file: Path,
        name: str = "laptop",
        url: str | None = None,
        long_poll_s: float | None = None,
    ) -> subprocess.Popen[bytes]:
        """A ``runpack runner`` (HTTP) in its own process group.

        A short ``long_poll_s`` lets the server stop soon after the runner (the server
        finishes a long poll in flight before it exits).
        """
        poll = ["--long-poll", str(long_poll_s)] if long_poll_s is not None else []
        return self._spawn(
            "runner",
            "runner",
            "--url",
            url or self.server.url,
            "--types",
            types,
            "--state-file",
            str(state_file),
            "--name",
            name,
            *poll,
        )

    def start_beat(self) -> subprocess.Popen[bytes]:
        """The one ``runpack beat``."""
        return self._spawn("beat", "beat")

    def celery_runners(self) -> list[dict[str, Any]]:
        """The Celery workers the API lists."""
        with self.server.client("admin") as admin:
            runners = admin.get("/api/admin/runners").json()["runners"]
        return [r for r in runners if r["kind"] == "celery"]

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL a process and its whole group (a pool's children too), like a crash."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self, process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
        """SIGTERM (a warm shutdown), then SIGKILL if it does not stop."""
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill(process)

    def stop_all(self, timeout_s: float = 3) -> None:
        """SIGTERM every process still running at once, then SIGKILL whichever has not
        stopped within ``timeout_s`` in all (a teardown: no test looks at how they stop)."""
        running = [p for p in self.processes if p.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(process)

    def log_of(self, process: subprocess.Popen[bytes]) -> str:
        """What one process of the cluster printed."""
        return self.log_paths[process.pid].read_text(errors="replace")

    def logs(self) -> str:
        """Every log of the cluster, for failure messages."""
        return "\n".join(
            f"== {p.name}\n{p.read_text(errors='replace')[-4000:]}"
            for p in sorted(self.tmp_dir.glob("*.log"))
        )

    def submit(self, job_type: str, params: dict[str, Any]) -> httpx.Response:
        """Submit a job as a client."""
        with self.server.client("submit") as client:
            return client.post(
                "/api/jobs/submit", json={"job_type": job_type, "input_params": params}
            )

    def job(self, job_id: str) -> dict[str, Any]:
        """A job as the admin sees it."""
        with self.server.client("admin") as admin:
            detail: dict[str, Any] = admin.get(f"/api/admin/jobs/{job_id}").json()
        return detail

    def wait_for_status(self, job_id: str, *statuses: str, timeout_s: float = 60) -> dict[str, Any]:
        """Wait until the job is in one of ``statuses``; fail with the logs if not."""
        try:
            return wait_for(
                lambda: (job := self.job(job_id))["status"] in statuses and job,
                timeout_s=timeout_s,
                what=f"job {job_id} to be {statuses}",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None


def cluster_variables(
    backend: Backend, tmp_dir: Path, plugin_dir: Path, extra_env: dict[str, str] | None = None
) -> dict[str, str]:
    """What every process of a cluster adds to a server's environment: the broker, the
    example plugin importable, fast recovery, then ``extra_env``."""
    return {
        "RUNPACK_BROKER_URL": broker_url_for(backend, tmp_dir),
        "PYTHONPATH": str(plugin_dir),
        **FAST_RECOVERY,
        **(extra_env or {}),
    }


@contextmanager
def cluster_around(
    server: ServerProcess, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[Cluster]:
    """Beat (+ ``workers`` workers) beside a running API; they are stopped afterwards.

    They share the server's environment unless ``env`` is given.
    """
    env = env or server.env
    cluster = Cluster(server, env, server.tmp_dir, env["RUNPACK_BROKER_URL"])
    try:
        cluster.start_beat()
        for _ in range(workers):
            cluster.start_worker()
        yield cluster
    finally:
        cluster.stop_all()


@contextmanager
def running_cluster(
    backend: Backend,
    database_url: str,
    tmp_dir: Path,
    plugin_dir: Path,
    extra_env: dict[str, str] | None = None,
    workers: int = 1,
    api_env: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    """API + beat (+ ``workers`` workers) on ``backend``; everything stopped afterwards.

    ``api_env`` overrides variables for the API process alone.
    """
    keys = Keys()
    extra = cluster_variables(backend, tmp_dir, plugin_dir, extra_env)
    with running_server(
        database_url, backend, tmp_dir, {**extra, **(api_env or {})}, keys=keys
    ) as server:
        env = server_env(database_url, keys, backend, extra, tmp_dir)
        with cluster_around(server, workers, env) as cluster:
            yield cluster


def tally_runs(log: Path) -> collections.Counter[str]:
    """How many times the example plugin ``tally`` ran each job, from its log."""
    lines = log.read_text().splitlines() if log.exists() else []
    return collections.Counter(line.removeprefix("ran ") for line in lines)
