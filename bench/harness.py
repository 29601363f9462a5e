"""What the benchmark scripts in this folder share: processes, waiting, /proc CPU accounting,
scratch PostgreSQL databases, Runpack environments, signals and the report's formatting.

The scripts are run as ``python bench/<name>.py``; Python then puts this folder first on
``sys.path``, so they import this module as ``harness``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import orjson
import sqlalchemy as sa

from runpack_tasks.jobstore.db import create_db_engine, normalize_url
from runpack_tasks.jobstore.schema import upgrade

HOST = "127.0.0.1"
#: Clock ticks per second, the unit of /proc CPU times.
HZ = os.sysconf("SC_CLK_TCK")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
#: A rate limit no benchmark reaches.
UNLIMITED_RATE = "100000000/minute"
RATE_KINDS = ("SUBMIT", "STATUS", "RUNNER", "ADMIN", "BATCH", "REGISTER")


# --- a lean HTTP client --------------------------------------------------------------------


class LeanClient:
    """One keep-alive HTTP/1.1 connection posting JSON, as little CPU as a Python client takes.

    The load generators share the machine's 2 cores with what they measure; httpx spends
    about 2 ms of CPU per request here, more than the API spends parsing it, so the
    throughput benchmarks submit through this (``http.client``, about 0.3 ms).
    """

    def __init__(self, base_url: str, headers: dict[str, str], timeout_s: float = 30.0) -> None:
        scheme, _, rest = base_url.partition("://")
        if scheme != "http":
            raise ValueError(f"LeanClient speaks plain HTTP, not {scheme}")
        host, _, port = rest.rstrip("/").partition(":")
        self._connection = http.client.HTTPConnection(host, int(port or 80), timeout=timeout_s)
        self._headers = {**headers, "Content-Type": "application/json"}

    def post(self, path: str, body: Any) -> tuple[int, bytes]:
        """POST ``body`` as JSON; -> (status, response body)."""
        return self.post_encoded(path, orjson.dumps(body))

    def post_encoded(self, path: str, body: bytes) -> tuple[int, bytes]:
        """POST ``body``, already encoded JSON; -> (status, response body)."""
        self._connection.request("POST", path, body, self._headers)
        response = self._connection.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> LeanClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


# --- progress -------------------------------------------------------------------------------


def log(message: str, *, stamp: bool = True, file: TextIO | None = None) -> None:
    """Print a progress line (``[HH:MM:SS]`` first with ``stamp``) to ``file`` (stdout)."""
    prefix = f"[{time.strftime('%H:%M:%S')}] " if stamp else ""
    print(prefix + message, file=file or sys.stdout, flush=True)


# --- processes ------------------------------------------------------------------------------


def free_port(host: str = HOST) -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def spawn(
    argv: list[str], env: dict[str, str], log_path: Path, cwd: Path
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new process group, stdin from /dev/null, output appended to a log."""
    with log_path.open("ab") as out:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the group ``proc`` leads, SIGKILL it after ``timeout_s``, then kill leftovers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # pool children or workers left behind by a parent that exited or was killed
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class Processes:
    """Every subprocess a benchmark started, each in its own group, logging to ``log_dir``."""

    log_dir: Path
    #: Working folder of the processes; None for ``log_dir``.
    cwd: Path | None = None
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str], cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` (in ``cwd``, else the working folder) with its output appended to
        ``<log_dir>/<name>.log``."""
        log_path = self.log_dir / f"{name}.log"
        proc = spawn(argv, env, log_path, cwd or self.cwd or self.log_dir)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        """Stop every process started, the last one first."""
        for proc in reversed(self.started):
            stop(proc)


def wait_for(
    condition: Callable[[], Any],
    what: str,
    timeout_s: float = START_TIMEOUT_S,
    interval_s: float = 0.1,
) -> Any:
    """Poll ``condition`` every ``interval_s`` until it returns something truthy; return it."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except Exception as exc:  # what we wait for may not answer yet
            last = exc
        else:
            if last:
                return last
        time.sleep(interval_s)
    raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})")


def raise_on_signals(signums: Sequence[int] = (signal.SIGTERM,), *, as_exit: bool = False) -> None:
    """Make ``signums`` raise KeyboardInterrupt (``as_exit``: SystemExit(128 + signum))."""

    def handler(signum: int, _frame: Any) -> None:
        if as_exit:
            sys.exit(128 + signum)
        raise KeyboardInterrupt(f"signal {signum}")

    for signum in signums:
        signal.signal(signum, handler)


# --- /proc: CPU -----------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (of all its threads)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children(current)
    return tree


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first); None if
    the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), 0 if it is gone."""
    fields = _stat(pid)
    return 0 if fields is None else int(fields[11]) + int(fields[12])


def running(pid: int) -> bool:
    """Whether ``pid`` still runs (an exited child not yet reaped has stopped running)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def busy_ticks() -> int:
    """CPU ticks the whole machine spent busy (user, nice, system, irq, softirq)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return user + nice + system + irq + softirq


def server_group(proc_dir: Path, database: str | None) -> str | None:
    """``redis``; ``postgres`` (serves ``database``); ``postgres-aux`` (WAL writer...); or None."""
    comm = (proc_dir / "comm").read_text().strip()
    if comm == "redis-server":
        return "redis"
    if comm != "postgres" or database is None:
        return None
    title = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    if f" {database} " in title:
        return "postgres"
    return None if "(" in title or "[local]" in title else "postgres-aux"


def server_pids(database: str | None) -> dict[int, str]:
    """Redis and PostgreSQL processes serving the benchmark, by pid, named by their group."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                group = server_group(entry, database)
                if group:
                    found[int(entry.name)] = group
    return found


@dataclass
class CpuSample:
    """CPU ticks at one moment: the machine's busy ticks and each watched pid's."""

    at: float
    busy: int
    ticks: dict[int, tuple[str, int]]  # pid -> (group, ticks)


def cpu_sample(owners: dict[int, str]) -> CpuSample:
    """CPU ticks now of the pids in ``owners`` (pid -> group) and of the whole machine."""
    ticks = {pid: (group, cpu_ticks(pid)) for pid, group in owners.items()}
    return CpuSample(time.monotonic(), busy_ticks(), ticks)


def cpu_usage(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """CPU seconds per group between two samples; ``other`` is everything else's."""
    used: dict[str, float] = {}
    for pid, (group, ticks) in after.ticks.items():
        start = before.ticks.get(pid, (group, 0))[1]
        used[group] = used.get(group, 0.0) + max(0, ticks - start) / HZ
    total = (after.busy - before.busy) / HZ
    used["other"] = max(0.0, total - sum(used.values()))
    return used


def foreign_load(owners: Callable[[], dict[int, str]], window_s: float = 1.0) -> float:
    """Cores used over the next ``window_s`` by processes outside ``owners()``."""
    before = cpu_sample(owners())
    time.sleep(window_s)
    return cpu_usage(before, cpu_sample(owners()))["other"] / window_s


def wait_for_quiet(load_now: Callable[[], float], max_wait_s: float, quiet_cores: float) -> float:
    """Sample ``load_now()`` until under ``quiet_cores`` or past ``max_wait_s``; the last load."""
    deadline = time.monotonic() + max_wait_s
    while True:
        load = load_now()
        if load < quiet_cores or time.monotonic() > deadline:
            return load


# --- Runpack's environment and database -----------------------------------------------------


def runpack_env(
    keys: dict[str, str], database_url: str | None = None, broker_url: str | None = None
) -> dict[str, str]:
    """This environment without RUNPACK_*, plus API ``keys`` by role, no rate limits, the URLs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPACK_")}
    env.update({f"RUNPACK_{role.upper()}_API_KEY": key for role, key in keys.items()})
    env.update({f"RUNPACK_RATE_{kind}": UNLIMITED_RATE for kind in RATE_KINDS})
    if database_url is not None:
        env["RUNPACK_DATABASE_URL"] = database_url
    if broker_url is not None:
        env["RUNPACK_BROKER_URL"] = broker_url
    return env


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL without its driver, for ``psycopg.connect``."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new migrated database ``runpack_bench_<random>``, dropped WITH (FORCE) afterwards."""
    name = f"runpack_bench_{secrets.token_hex(6)}"
    admin = create_db_engine(admin_url, pool_size=1)
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            url = normalize_url(admin_url).set(database=name).render_as_string(False)
            upgrade(url)
            yield url
        finally:
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextlib.contextmanager
def rabbitmq_vhost(amqp_url: str, label: str) -> Iterator[str]:
    """A new RabbitMQ vhost ``runpack_bench_<label>_<random>`` that guest may use (made and
    deleted with rabbitmqctl); yields ``amqp_url`` with it."""
    name = f"runpack_bench_{label}_{secrets.token_hex(4)}"

    def ctl(*args: str) -> None:
        subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)

    ctl("add_vhost", name)
    try:
        ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield f"{amqp_url.rstrip('/')}/{name}"
    finally:
        ctl("delete_vhost", name)


# --- report ---------------------------------------------------------------------------------


def spread(values: Sequence[float], fmt: str = ".0f", *, bare_single: bool = False) -> str:
    """``median [min-max]`` in format spec ``fmt``; with ``bare_single`` one value alone."""
    median = format(statistics.median(values), fmt)
    if bare_single and len(values) == 1:
        return median
    return f"{median} [{format(min(values), fmt)}-{format(max(values), fmt)}]"


def print_table(
    rows: Sequence[Sequence[str]], style: Literal["markdown", "columns"] = "markdown"
) -> None:
    """Print ``rows`` (header first) as Markdown, or as ``columns``: 2 left-aligned, then right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    if style == "markdown":
        lines = [
            "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
            for row in rows
        ]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    else:
        lines = [
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
            for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
    print("\n".join(lines), flush=True)
