"""HTTP runners: no-op job throughput, and submit-to-claim latency with long vs plain polling.

What it measures, on one backend per run:

1. ``throughput``: ``runpack api`` (one process) and ``--runners`` (default 4) ``runpack
   runner --types noop --long-poll 25`` processes, no Celery worker and no beat. N ``noop``
   jobs with unique parameters are submitted over HTTP (POST /api/jobs/submit) from
   ``--client-threads`` keep-alive httpx clients. Rate = N / (first submit -> the last
   job's ``finished_at``, read from the database). The submit rate (N / first submit ->
   last submit answered, while the runners work alongside) is shown too. Repeated
   ``--reps`` times on the same API, database and runners; the table shows
   ``median [min-max]``. Each repetition also counts, from the API's access log, the
   requests per job (polls, claims lost with 409, heartbeats) and the CPU milliseconds per
   job of the API, the runners, this script, PostgreSQL (the backends serving the bench
   database), Redis, and everything else on the machine ("other", foreign load: this VM is
   shared). Before each repetition the script waits up to ``--quiet-wait`` s until foreign
   processes use under 0.3 cores.
2. ``latency``: one idle runner at a time, first ``--long-poll 25``, then ``--long-poll 0
   --poll-interval 1``. One ``noop`` job is submitted, and its latency is the job's
   ``claimed_at - created_at`` (epoch ms, GET /api/admin/jobs/{id}). The next sample waits
   until the job completed, then 0.5-1.5 s (random) so the runner is idle again.
   ``--samples`` (default 20) per mode; the table shows p50, p90 and max.

Backends: ``embedded`` (default): a SQLite file and the filesystem broker in a temporary
folder. ``postgres``: a fresh database ``runpack_bench_<random>`` on ``--pg-url`` (dropped
WITH (FORCE) at the end) and Redis database ``--redis-db`` (flushed before and after).

Run it from the repository root with the venv's Python:

    /work/venv/bin/python bench/runner_bench.py                          # embedded, defaults
    /work/venv/bin/python bench/runner_bench.py --backend postgres
    /work/venv/bin/python bench/runner_bench.py --jobs 200 --reps 1 --samples 5   # quick

Everything listens on 127.0.0.1. Every process it starts runs in its own process group and
is stopped on exit (also on Ctrl-C, SIGTERM and errors). The processes' logs go to the
temporary folder, kept (and named) when something failed or with ``--keep-logs``. Exit
status: 0 on success, 2 on an error.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
import sqlalchemy as sa
from harness import (
    HOST,
    CpuSample,
    Processes,
    cpu_sample,
    cpu_usage,
    foreign_load,
    free_port,
    fresh_database,
    log,
    print_table,
    raise_on_signals,
    runpack_env,
    server_pids,
    spread,
    stop,
    wait_for,
    wait_for_quiet,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runpack_tasks.jobstore.db import create_db_engine  # noqa: E402
from runpack_tasks.jobstore.schema import upgrade  # noqa: E402

#: ``runpack`` itself, to put before its subcommands.
RUNPACK = [sys.executable, "-m", "runpack_api.cli"]
#: How often wait_for polls.
POLL_S = 0.05
#: Foreign load (cores) under which the machine counts as quiet.
QUIET_CORES = 0.3
CPU_GROUPS = ("api", "runners", "bench", "postgres", "redis", "other")
KEY_NAMES = ("submit", "runner", "admin")
#: An access-log line of uvicorn: method, path, status.
ACCESS_LINE = re.compile(r'"(GET|POST|DELETE) (\S+) HTTP/[\d.]+" (\d{3})')


# --- arguments ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--backend", choices=("embedded", "postgres"), default="embedded")
    add("--jobs", type=int, default=1000, help="jobs per throughput repetition (default 1000)")
    add("--reps", type=int, default=3, help="throughput repetitions (default 3)")
    add("--runners", type=int, default=4, help="runners in the throughput run (default 4)")
    add("--client-threads", type=int, default=4, help="concurrent HTTP submitters (default 4)")
    add("--samples", type=int, default=20, help="latency samples per mode (default 20)")
    add("--long-poll", type=float, default=25, help="--long-poll of the runners (default 25)")
    add("--poll-interval", type=float, default=1.0, help="plain polling interval (default 1)")
    add(
        "--pg-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="PostgreSQL database to connect to for CREATE/DROP DATABASE",
    )
    add("--redis-db", type=int, default=14, help="Redis database of the broker (flushed)")
    add("--timeout", type=float, default=600, help="max seconds for one repetition to finish")
    add("--quiet-wait", type=float, default=60, help="max s to wait for a quiet machine")
    add("--keep-logs", action="store_true", help="keep the processes' logs")
    args = parser.parse_args(argv)
    if min(args.jobs, args.reps, args.runners, args.client_threads, args.samples) < 1:
        parser.error("--jobs, --reps, --runners, --client-threads and --samples must be >= 1")
    return args


# --- backends -------------------------------------------------------------------------------


@contextlib.contextmanager
def embedded_backend(tmp_dir: Path) -> Iterator[tuple[str, str]]:
    """A migrated SQLite file and a filesystem broker folder."""
    url = f"sqlite:///{tmp_dir / 'runpack.db'}"
    upgrade(url)
    yield url, f"filesystem://{tmp_dir / 'broker'}"


@contextlib.contextmanager
def postgres_backend(pg_url: str, redis_db: int) -> Iterator[tuple[str, str]]:
    """A fresh migrated PostgreSQL database and a flushed Redis database; both cleaned after."""
    broker_url = f"redis://{HOST}:6379/{redis_db}"
    with fresh_database(pg_url) as url:
        redis.Redis.from_url(broker_url).flushdb()
        try:
            yield url, broker_url
        finally:
            with contextlib.suppress(redis.RedisError):
                redis.Redis.from_url(broker_url).flushdb()


# --- the system under test ------------------------------------------------------------------


@dataclass
class System:
    """The API process, its keys, and the runners currently started."""

    procs: Processes
    url: str
    keys: dict[str, str]
    base_env: dict[str, str]
    api: subprocess.Popen[bytes]
    log_dir: Path
    db_name: str | None
    runners: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def client(self, role: str, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[role]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)

    @property
    def api_log(self) -> Path:
        return self.log_dir / "api.log"


def start_api(procs: Processes, database_url: str, broker_url: str) -> System:
    """``runpack api`` on a free loopback port; returns once /health answers ok."""
    keys = {role: secrets.token_urlsafe(16) for role in KEY_NAMES}
    env = runpack_env(keys, database_url, broker_url)
    port = free_port()
    api_argv = [*RUNPACK, "api", "--host", HOST, "--port", str(port), "--workers", "1"]
    api = procs.spawn("api", api_argv, env)
    url = f"http://{HOST}:{port}"

    def healthy() -> bool:
        if api.poll() is not None:
            raise SystemExit(f"runpack api exited with {api.returncode}; see its log")
        return bool(httpx.get(f"{url}/health", timeout=5).json().get("status") == "ok")

    wait_for(healthy, "runpack api to answer /health", interval_s=POLL_S)
    db_name = sa.make_url(database_url).database if database_url.startswith("postgres") else None
    return System(procs, url, keys, runpack_env(keys), api, procs.log_dir, db_name)


def start_runner(system: System, name: str, long_poll: float, poll_interval: float) -> None:
    """One ``runpack runner --types noop``; returns once the API lists it as active."""
    args = [
        *RUNPACK,
        "runner",
        "--url",
        system.url,
        "--types",
        "noop",
        "--name",
        name,
        "--state-file",
        str(system.log_dir / f"{name}.json"),
        "--long-poll",
        str(long_poll),
        "--poll-interval",
        str(poll_interval),
    ]
    env = {**system.base_env, "RUNPACK_URL": system.url}
    system.runners.append(system.procs.spawn(name, args, env))

    def registered() -> bool:
        with system.client("admin") as admin:
            found = admin.get("/api/admin/runners").json()["runners"]
        return any(r["name"] == name and r["is_active"] for r in found)

    wait_for(registered, f"runner {name} to register", interval_s=POLL_S)


def stop_runners(system: System) -> None:
    for proc in system.runners:
        stop(proc)
    system.runners.clear()


# --- CPU accounting -------------------------------------------------------------------------


def cpu_owners(system: System) -> dict[int, str]:
    """The API, the runners, this process, our PostgreSQL backends and Redis, by pid."""
    owner = {pid: g for pid, g in server_pids(system.db_name).items() if g != "postgres-aux"}
    owner.update({system.api.pid: "api", os.getpid(): "bench"})
    owner.update(dict.fromkeys((p.pid for p in system.runners), "runners"))
    return owner


def cpu_seconds(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """CPU seconds by group; ``other`` is everything else on the machine (foreign load)."""
    return dict.fromkeys(CPU_GROUPS, 0.0) | cpu_usage(before, after)


# --- access log -----------------------------------------------------------------------------


def classify(method: str, path: str) -> str:
    if path.startswith("/api/runner/jobs/available"):
        return "poll"
    if path.startswith("/api/runner/jobs/"):
        return path.rsplit("/", 1)[1]  # claim, heartbeat, complete, error, release
    if path.startswith("/api/jobs/submit"):
        return "submit"
    return "other"


def access_counts(path: Path, offset: int) -> Counter[str]:
    """Requests in the API log after byte ``offset``, by kind and status (``claim 409``)."""
    counts: Counter[str] = Counter()
    with path.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    for method, url, status in ACCESS_LINE.findall(text):
        kind = classify(method, url)
        counts[kind] += 1
        if status != "200" and not (kind == "submit" and status == "201"):
            counts[f"{kind} {status}"] += 1
    return counts


# --- throughput -----------------------------------------------------------------------------


@dataclass
class Rep:
    rate: float  # jobs/s, first submit -> last finished_at
    submit_rate: float  # submits/s while the runners work alongside
    requests: dict[str, float]  # per job, by kind
    cpu_ms: dict[str, float]  # per job, by process group
    other_cores: float  # foreign load during the repetition


def submit_jobs(system: System, tag: str, n: int, threads: int) -> float:
    """Submit ``n`` unique noop jobs from ``threads`` keep-alive clients; when the last answered."""
    counter = iter(range(n))
    lock = threading.Lock()
    stopping = threading.Event()  # set on Ctrl-C or a failure: the others stop too

    def worker() -> None:
        with system.client("submit") as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None or stopping.is_set():
                    return
                body = {"job_type": "noop", "input_params": {"bench": tag, "i": i}}
                answer = client.post("/api/jobs/submit", json=body)
                if answer.status_code != 201:
                    raise RuntimeError(f"submit answered {answer.status_code}: {answer.text}")

    with ThreadPoolExecutor(threads) as pool:
        try:
            for future in [pool.submit(worker) for _ in range(threads)]:
                future.result()
        except BaseException:
            stopping.set()
            raise
    return time.time()


def counts_by_status(engine: sa.Engine) -> tuple[dict[str, int], int | None]:
    """Jobs per status, and the latest finished_at (epoch ms)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT status, count(*) FROM jobs GROUP BY status")).all()
        last = conn.execute(sa.text("SELECT max(finished_at) FROM jobs")).scalar()
    return {str(status): int(n) for status, n in rows}, last


def check_alive(system: System) -> None:
    for proc in (system.api, *system.runners):
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[3]} (pid {proc.pid}) exited with {proc.returncode}")


def wait_all_done(system: System, engine: sa.Engine, expected: int, timeout_s: float) -> int:
    """Wait until ``expected`` jobs completed in all; the last finished_at (ms)."""

    def done() -> int | None:
        check_alive(system)
        counts, last = counts_by_status(engine)
        if counts.get("failed"):
            raise SystemExit(f"{counts['failed']} jobs failed: {counts}")
        return last if counts.get("completed", 0) >= expected else None

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (last := done()) is not None:
            return last
        time.sleep(0.05)
    raise RuntimeError(f"jobs not done after {timeout_s:.0f} s: {counts_by_status(engine)[0]}")


def throughput_rep(system: System, engine: sa.Engine, args: argparse.Namespace) -> Rep:
    """One repetition: N submits, wait until all completed."""
    baseline = counts_by_status(engine)[0].get("completed", 0)
    log_offset = system.api_log.stat().st_size
    cpu_before = cpu_sample(cpu_owners(system))
    first = time.time()
    submitted = submit_jobs(system, uuid.uuid4().hex, args.jobs, args.client_threads)
    last_ms = wait_all_done(system, engine, baseline + args.jobs, args.timeout)
    cpu_after = cpu_sample(cpu_owners(system))
    cpu = cpu_seconds(cpu_before, cpu_after)
    time.sleep(0.5)  # let the access log catch up
    counts = access_counts(system.api_log, log_offset)
    return Rep(
        rate=args.jobs / (last_ms / 1000 - first),
        submit_rate=args.jobs / (submitted - first),
        requests={kind: n / args.jobs for kind, n in sorted(counts.items())},
        cpu_ms={group: 1000 * seconds / args.jobs for group, seconds in cpu.items()},
        other_cores=cpu["other"] / (cpu_after.at - cpu_before.at),
    )


def describe(rep: Rep) -> str:
    requests = ", ".join(f"{k} {v:.2f}" for k, v in rep.requests.items() if k != "submit")
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in rep.cpu_ms.items())
    return (
        f"{rep.rate:.0f} jobs/s (submits {rep.submit_rate:.0f}/s); "
        f"requests per job: {requests}; CPU ms per job: {cpu}; "
        f"foreign load {rep.other_cores:.2f} cores"
    )


def throughput(system: System, engine: sa.Engine, args: argparse.Namespace) -> list[Rep]:
    for i in range(args.runners):
        start_runner(system, f"tp-runner-{i}", args.long_poll, args.poll_interval)
    log(f"{args.runners} runners up (--long-poll {args.long_poll:g})")
    reps = []
    try:
        for i in range(args.reps):
            load = wait_for_quiet(
                lambda: foreign_load(lambda: cpu_owners(system)), args.quiet_wait, QUIET_CORES
            )
            if load >= QUIET_CORES:
                log(f"machine still busy ({load:.2f} cores of foreign load); measuring anyway")
            rep = throughput_rep(system, engine, args)
            log(f"throughput rep {i + 1}/{args.reps}: {describe(rep)}")
            reps.append(rep)
    finally:
        stop_runners(system)
    return reps


# --- latency --------------------------------------------------------------------------------


def one_latency(submit: httpx.Client, admin: httpx.Client) -> float:
    """Submit one job; its claimed_at - created_at (ms) once it completed."""
    body = {"job_type": "noop", "input_params": {"latency": uuid.uuid4().hex}}
    answer = submit.post("/api/jobs/submit", json=body)
    if answer.status_code != 201:
        raise RuntimeError(f"submit answered {answer.status_code}: {answer.text}")
    job_id = answer.json()["job_id"]

    def completed() -> dict[str, Any] | None:
        job: dict[str, Any] = admin.get(f"/api/admin/jobs/{job_id}").json()
        if job["status"] == "failed":
            raise SystemExit(f"job {job_id} failed: {job}")
        return job if job["status"] == "completed" else None

    job = wait_for(completed, f"job {job_id} to complete", timeout_s=30, interval_s=POLL_S)
    return float(job["claimed_at"] - job["created_at"])


def latency(
    system: System, mode: str, runner_args: tuple[float, float], samples: int
) -> list[float]:
    """``samples`` latencies with one runner started with (long_poll, poll_interval)."""
    start_runner(system, f"lat-runner-{mode}", *runner_args)
    found = []
    try:
        with system.client("submit") as submit, system.client("admin") as admin:
            for _ in range(samples):
                time.sleep(random.uniform(0.5, 1.5))  # the runner is idle again
                found.append(one_latency(submit, admin))
    finally:
        stop_runners(system)
    log(f"latency {mode}: " + " ".join(f"{ms:.0f}" for ms in found) + " ms")
    return found


# --- report ---------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def report(args: argparse.Namespace, reps: list[Rep], lat: dict[str, list[float]]) -> None:
    n = f"N={args.jobs}, {args.reps} reps"
    rows: list[tuple[str, ...]] = [
        (f"backend: {args.backend}", "median [min-max]"),
        (f"throughput, {args.runners} runners, jobs/s ({n})", spread([r.rate for r in reps])),
        ("submits/s during it", spread([r.submit_rate for r in reps])),
    ]
    for kind in ("poll", "claim", "claim 409", "heartbeat", "complete"):
        values = [r.requests.get(kind, 0.0) for r in reps]
        rows.append((f"{kind} requests per job", spread(values, ".2f")))
    for group in CPU_GROUPS:
        values = [r.cpu_ms[group] for r in reps]
        rows.append((f"CPU ms per job: {group}", spread(values, ".2f")))
    rows.append(("foreign load, cores", spread([r.other_cores for r in reps], ".2f")))
    print()
    print_table(rows)
    print()
    lat_rows: list[tuple[str, ...]] = [("submit -> claim (ms)", "p50", "p90", "max", "samples")]
    for mode, values in lat.items():
        cells = (percentile(values, 50), percentile(values, 90), max(values))
        lat_rows.append((mode, *(f"{v:.0f}" for v in cells), str(len(values))))
    print_table(lat_rows)


# --- main -----------------------------------------------------------------------------------


def block_signals() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def run(args: argparse.Namespace, tmp_dir: Path) -> tuple[list[Rep], dict[str, list[float]]]:
    procs = Processes(tmp_dir)
    with contextlib.ExitStack() as stack:
        if args.backend == "postgres":
            backend = postgres_backend(args.pg_url, args.redis_db)
        else:
            backend = embedded_backend(tmp_dir)
        database_url, broker_url = stack.enter_context(backend)
        engine = create_db_engine(database_url, pool_size=1)
        stack.callback(engine.dispose)
        stack.callback(procs.stop_all)
        stack.callback(block_signals)  # runs first: a second Ctrl-C cannot cut the cleanup
        system = start_api(procs, database_url, broker_url)
        log(f"{args.backend}: API at {system.url}; logs in {tmp_dir}")
        reps = throughput(system, engine, args)
        modes = {
            f"long poll {args.long_poll:g} s": (args.long_poll, args.poll_interval),
            f"polling every {args.poll_interval:g} s": (0.0, args.poll_interval),
        }
        lat = {
            mode: latency(system, f"m{i}", runner_args, args.samples)
            for i, (mode, runner_args) in enumerate(modes.items())
        }
    return reps, lat


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGINT too: also when started with SIGINT ignored (in the background)
    raise_on_signals((signal.SIGTERM, signal.SIGINT))
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    log(
        f"runner_bench: backend={args.backend} N={args.jobs} reps={args.reps} "
        f"runners={args.runners} samples={args.samples}; nproc={os.cpu_count()} loadavg {load}"
    )
    tmp_dir = Path(tempfile.mkdtemp(prefix="runner_bench-"))
    keep = args.keep_logs
    try:
        reps, lat = run(args, tmp_dir)
    except BaseException as exc:
        keep = True
        if not isinstance(exc, KeyboardInterrupt | SystemExit):
            traceback.print_exc()
        print(f"runner_bench failed: {exc!r}; logs kept in {tmp_dir}", file=sys.stderr)
        return 2
    finally:
        if not keep:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    report(args, reps, lat)
    if keep:
        print(f"logs: {tmp_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
