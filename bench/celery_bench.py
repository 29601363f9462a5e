"""Runpack's job throughput against raw Celery, and its worker's memory, on Redis or RabbitMQ.

What it measures, in one run:

1. ``raw Celery``: ``bench/raw_celery_app.py``, a plain Celery app with Runpack's reliability
   settings (late acks, reject-on-worker-lost, prefetch 1, no results) and a no-op task that
   does one Redis INCR. Its worker (``celery -A bench.raw_celery_app worker --pool prefork
   --concurrency 2``) runs as a subprocess; this process publishes N tasks with
   ``apply_async``. Rate = N / (first publish -> the last task's INCR).
2. ``Runpack``: a fresh PostgreSQL database, ``runpack api --no-access-log`` (raw Celery
   logs nothing per task either), ``runpack worker --types noop``
   and ``runpack beat`` as subprocesses on the same Redis (another database number, flushed
   first). N ``noop`` jobs with unique parameters are submitted over HTTP (POST
   /api/jobs/submit) from ``--client-threads`` keep-alive ``http.client`` connections
   (``harness.LeanClient``: httpx would take 2 ms of the 2 cores per job). Rate = N / (first
   submit -> the last job's ``finished_at``, read from the database). The submit rate is
   N / (first submit -> last submit answered), measured while the worker runs alongside.
   The ratio Runpack / raw Celery of the medians is checked against ``--target-ratio``.
3. ``floor`` (with ``--floor``): the least a job cache on Celery does per job, written by
   hand with none of Runpack's code (``bench/floor_app.py``, ``bench/floor_api.py``): a
   FastAPI endpoint that stores the job with one durable ``INSERT ... ON CONFLICT`` and
   publishes one Celery message, and a task with raw Celery's settings that claims the row
   with one ``UPDATE`` (its commit not waiting for the disk) and completes it with another.
   Its API and worker run like Runpack's, on a database of their own, submitted to the same
   way; ``Runpack / floor`` shows what Runpack costs beyond what the contract itself costs,
   ``floor / raw Celery`` what the contract costs against Celery alone. The floor uses
   Runpack's Redis channel: compare it with ``--raw-channel runpack``.
4. ``memory``: a new ``runpack worker`` is started, and the RSS (VmRSS, main process plus
   its pool children) is read after 100 jobs and after ``--memory-jobs`` jobs; the growth
   is checked against ``--target-growth`` percent. ``--skip-memory`` leaves this out.

Runpack's Celery app uses its own Redis channel (``runpack_tasks/redisbroker.py``: kombu's,
reusing one redis client where kombu builds one per command). Raw Celery runs on kombu's
own channel, the baseline the target is about; ``--raw-channel runpack`` gives it
Runpack's channel too, which shows how much of the ratio that channel accounts for.

The repetitions are interleaved (raw 1, floor 1, Runpack 1, raw 2, ...), so a slow
period of this noisy VM hits both alike; the table shows ``median [min-max]``. Before each
repetition the script waits (up to ``--quiet-wait`` s) until processes outside the
benchmark use under 0.2 cores; "other cpu" is what such foreign processes used during the
repetition (Redis and PostgreSQL count as part of the benchmark). Each repetition also
prints the CPU time per job of every process involved, which shows where the time goes.

Run it from the repository root with the venv's Python:

    /work/venv/bin/python bench/celery_bench.py                     # defaults: N=2000, 3 reps
    /work/venv/bin/python bench/celery_bench.py --jobs 200 --reps 1 --skip-memory   # quick
    /work/venv/bin/python bench/celery_bench.py --broker amqp --skip-memory   # RabbitMQ

``--baseline DIR`` also runs Runpack from another checkout of the repository (a git
worktree of an older commit: ``git worktree add /tmp/base <commit>``), with an API, beat and
worker of its own on a database and a Redis database (``--runpack-redis-db`` + 1) of its
own; its repetitions go between raw Celery's and the current code's (raw 1, base 1,
Runpack 1, raw 2, ...), so a change shows its before and after in one run, each against
the same raw Celery. The baseline's rows are marked ``(base)``.

With ``--broker amqp`` both run on RabbitMQ (``--amqp-url``), each in a vhost made for
the run with ``rabbitmqctl`` and deleted after it; raw Celery's counter and Runpack's rate
limits and wake-ups stay on Redis.

Every process it starts is stopped on exit (also on Ctrl-C, SIGTERM and errors), the
database is dropped, and both Redis databases are flushed. Logs go to a temporary folder,
kept (and named) when something failed or with ``--keep-logs``. Exit status: 0 when every
target is met, 1 when one is not, 2 on an error.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from harness import (
    LeanClient,
    Processes,
    cpu_sample,
    cpu_usage,
    foreign_load,
    free_port,
    fresh_database,
    libpq_url,
    log,
    print_table,
    process_tree,
    rabbitmq_vhost,
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

from bench.raw_celery_app import TASK_NAME, make_app  # noqa: E402

#: Foreign load (cores) under which the machine counts as quiet.
QUIET_CORES = 0.2
WARMUP_JOBS = 20
MEMORY_FIRST_JOBS = 100
ACTIVE_STATUSES = ("pending", "claimed", "in_progress")
#: Process names whose CPU is part of the benchmark wherever they run.
SERVER_COMMS = {"redis-server": "redis", "postgres": "postgres", "beam.smp": "rabbitmq"}
#: Celery workers, whose main process and pool children are counted apart.
WORKER_GROUPS = {"raw-worker", "rp-worker", "base-worker", "floor-worker"}


# --- arguments ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--jobs", type=int, default=2000, help="tasks/jobs per repetition (default 2000)")
    add("--reps", type=int, default=3, help="repetitions of each throughput run (default 3)")
    add("--pool", default="prefork", help="Celery pool of both workers (default prefork)")
    add("--concurrency", type=int, default=2, help="pool size of both workers (default 2)")
    add("--client-threads", type=int, default=4, help="concurrent HTTP submitters (default 4)")
    add("--api-workers", type=int, default=1, help="uvicorn processes of runpack api")
    add("--raw-events", action="store_true", help="raw Celery sends task events like Runpack")
    add(
        "--raw-channel",
        choices=("kombu", "runpack"),
        default="kombu",
        help="raw Celery's Redis channel: kombu's own (default), or Runpack's, which reuses "
        "one redis client per channel",
    )
    add(
        "--broker",
        choices=("redis", "amqp"),
        default="redis",
        help="the broker of both: Redis (default), or RabbitMQ at --amqp-url, each in a "
        "vhost of its own made for the run (rabbitmqctl) and deleted after it; the raw "
        "counter and Runpack's rate limits stay on Redis",
    )
    add("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672", help="RabbitMQ, no vhost")
    add("--redis-host", default="127.0.0.1:6379", help="host:port of Redis")
    add("--raw-redis-db", type=int, default=12, help="Redis db of raw Celery (flushed)")
    add("--runpack-redis-db", type=int, default=13, help="Redis db of Runpack (flushed)")
    add("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test", help="admin database")
    add("--skip-memory", action="store_true", help="leave out the worker memory measurement")
    add("--memory-jobs", type=int, default=10_000, help="jobs for the memory measurement")
    add("--target-ratio", type=float, default=0.5, help="Runpack / raw Celery target")
    add("--target-growth", type=float, default=20.0, help="worker RSS growth target, percent")
    add("--quiet-wait", type=float, default=60.0, help="max seconds to wait for a quiet machine")
    add("--keep-logs", action="store_true", help="keep the processes' logs")
    add("--baseline", type=Path, help="also run Runpack from this checkout, interleaved")
    add(
        "--floor",
        action="store_true",
        help="also run the floor (bench/floor_app.py: FastAPI, one INSERT, a Celery task "
        "that claims and completes with one UPDATE each), interleaved",
    )
    args = parser.parse_args(argv)
    if args.baseline is not None and not (args.baseline / "runpack_tasks").is_dir():
        parser.error(f"--baseline {args.baseline} is not a checkout of this repository")
    if args.jobs < 1 or args.reps < 1 or args.memory_jobs <= MEMORY_FIRST_JOBS:
        parser.error(f"--jobs and --reps must be >= 1, --memory-jobs > {MEMORY_FIRST_JOBS}")
    return args


# --- /proc: CPU and memory ------------------------------------------------------------------


@dataclass
class Watched:
    """What counts as the benchmark's own CPU: process trees by name, and one database."""

    groups: dict[str, int]
    database: str

    def owners(self) -> dict[int, str]:
        """Every benchmark process by pid, named by its group (a group is a process tree)."""
        owner = server_pids(self.database)
        for name, root in self.groups.items():
            tree = process_tree(root)
            if name in WORKER_GROUPS:
                owner.update(dict.fromkeys(tree, f"{name}-pool"))
                owner[root] = f"{name}-main"
            else:
                owner.update(dict.fromkeys(tree, name))
        return owner


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --- measurements ---------------------------------------------------------------------------


@dataclass
class Timing:
    """When a run's first and last message went out, and when the last one was done."""

    first: float  # epoch s
    sent: float
    done: float
    done_when_sent: int  # completed by the time the last message went out


@dataclass
class Rep:
    """One repetition of a throughput run."""

    rate: float  # tasks or jobs per second, first send -> last completion
    send_rate: float  # publishes or submits per second, while the worker ran alongside
    drain_rate: float  # what was left after the last send, per second of the worker alone
    other_cores: float
    cpu_ms: dict[str, float]  # CPU milliseconds per task/job, by process group


def measured(watched: Watched, n: int, run: Callable[[], Timing]) -> Rep:
    """Run ``run`` with CPU accounting."""
    before = cpu_sample(watched.owners())
    timing = run()
    after = cpu_sample(watched.owners())
    used = cpu_usage(before, after)
    left = n - timing.done_when_sent
    return Rep(
        rate=n / (timing.done - timing.first),
        send_rate=n / (timing.sent - timing.first),
        drain_rate=left / (timing.done - timing.sent) if left > 0 else float("nan"),
        other_cores=used.pop("other") / (after.at - before.at),
        cpu_ms={name: 1000 * s / n for name, s in sorted(used.items())},
    )


def describe(label: str, rep: Rep) -> str:
    cpu = ", ".join(f"{name} {ms:.2f}" for name, ms in rep.cpu_ms.items())
    return (
        f"{label}: {rep.rate:.0f}/s (sending {rep.send_rate:.0f}/s, "
        f"then draining {rep.drain_rate:.0f}/s), "
        f"other cpu {rep.other_cores:.2f}; CPU ms per job: {cpu}"
    )


# --- raw Celery -----------------------------------------------------------------------------


@dataclass
class RawCelery:
    """The baseline worker (a subprocess) and this process's publisher."""

    broker_url: str
    queue: str
    proc: subprocess.Popen[bytes]
    app: Any
    client: redis.Redis

    def run(self, n: int, tag: str) -> Timing:
        """Publish ``n`` tasks and wait for the last."""
        key = f"bench:raw:{tag}"
        self.client.delete(key, f"{key}:done")
        task = self.app.tasks[TASK_NAME]
        first = time.time()
        for _ in range(n):
            task.apply_async(args=(key, n), queue=self.queue)
        sent = time.time()
        done_when_sent = int(self.client.get(key) or 0)
        done = wait_for(
            lambda: self.proc.poll() is None and self.client.get(f"{key}:done"),
            f"{n} raw Celery tasks",
            timeout_s=max(60.0, n / 20),
        )
        self.client.delete(key, f"{key}:done")
        return Timing(first, sent, float(done), done_when_sent)


def start_raw_celery(
    procs: Processes, args: argparse.Namespace, stack: contextlib.ExitStack
) -> RawCelery:
    counter_url = f"redis://{args.redis_host}/{args.raw_redis_db}"
    broker_url = counter_url
    if args.broker == "amqp":
        broker_url = stack.enter_context(rabbitmq_vhost(args.amqp_url, "raw"))
    client = redis.Redis.from_url(counter_url)
    client.flushdb()
    queue = f"bench.raw.{secrets.token_hex(4)}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RAW_CELERY_BROKER_URL": broker_url,
        "RAW_CELERY_COUNTER_URL": counter_url,
        "RAW_CELERY_EVENTS": "1" if args.raw_events else "0",
        "RAW_CELERY_CHANNEL": args.raw_channel,
    }
    argv = [sys.executable, "-m", "celery", "-A", "bench.raw_celery_app", "worker"]
    argv += ["-Q", queue, "--pool", args.pool, "--concurrency", str(args.concurrency)]
    proc = procs.spawn("raw-worker", argv, env)
    app = make_app(
        broker_url, events=args.raw_events, channel=args.raw_channel, counter_url=counter_url
    )
    raw = RawCelery(broker_url, queue, proc, app, client)
    raw.run(WARMUP_JOBS, "warmup")  # the worker is up once these ran
    return raw


# --- Runpack --------------------------------------------------------------------------------


@dataclass
class Runpack:
    """API, worker and beat on one database and one Redis database."""

    procs: Processes
    env: dict[str, str]
    base_url: str
    keys: dict[str, str]
    db: psycopg.Connection[Any]
    api: subprocess.Popen[bytes]
    beat: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes] | None = None
    threads: int = 4
    worker_argv: list[str] = field(default_factory=list)
    #: The prefix of its processes' names: ``rp``, or ``base`` for ``--baseline``'s.
    prefix: str = "rp"
    #: Where its processes run (``--baseline``'s checkout: ``python -m`` looks there first).
    cwd: Path | None = None

    def groups(self) -> dict[str, int]:
        found = {f"{self.prefix}-api": self.api.pid, f"{self.prefix}-beat": self.beat.pid}
        if self.worker is not None:
            found[f"{self.prefix}-worker"] = self.worker.pid
        return found

    def celery_runners(self) -> set[str]:
        headers = {"Authorization": f"Bearer {self.keys['admin']}"}
        answer = httpx.get(f"{self.base_url}/api/admin/runners", headers=headers, timeout=10)
        answer.raise_for_status()
        runners = answer.json()["runners"]
        return {r["runner_id"] for r in runners if r["kind"] == "celery" and r["is_active"]}

    def start_worker(self) -> None:
        """A new ``runpack worker``; returns once the API lists it as active."""
        before = self.celery_runners()
        self.worker = self.procs.spawn(
            f"{self.prefix}-worker", self.worker_argv, self.env, self.cwd
        )
        worker = self.worker
        wait_for(
            lambda: worker.poll() is None and self.celery_runners() - before,
            "the Runpack worker to register",
        )

    def restart_worker(self) -> None:
        if self.worker is not None:
            stop(self.worker)
        self.start_worker()

    def run(self, n: int, tag: str) -> Timing:
        """Submit ``n`` new jobs and wait for them (the database has when each finished)."""
        return submit_and_wait(
            self.db, "jobs", self.base_url, self.keys["submit"], n, tag, self.threads
        )

    def worker_rss(self) -> list[tuple[int, int]]:
        """(pid, VmRSS KiB) of the worker and its pool children."""
        assert self.worker is not None
        return [(pid, rss_kib(pid)) for pid in process_tree(self.worker.pid)]


def submit_and_wait(
    db: psycopg.Connection[Any], table: str, base_url: str, key: str, n: int, tag: str, threads: int
) -> Timing:
    """Submit ``n`` new noop jobs over HTTP and wait until ``table`` has none active."""
    since_ms = time.time_ns() // 1_000_000
    first, sent = submit_jobs(base_url, key, n, tag, threads)
    finished, done_when_sent = wait_done(db, table, since_ms, n, int(sent * 1000))
    return Timing(first, sent, finished, done_when_sent)


def wait_done(
    db: psycopg.Connection[Any], table: str, since_ms: int, n: int, sent_ms: int
) -> tuple[float, int]:
    """Wait until no job of ``table`` is active; -> the last finished_at (epoch s) of the
    ``n`` jobs, and how many had finished by ``sent_ms``."""
    active = f"SELECT count(*) FROM {table} WHERE status = ANY(%s)"
    wait_for(
        lambda: db.execute(active, [list(ACTIVE_STATUSES)]).fetchone() == (0,),
        f"{n} jobs of {table}",
        timeout_s=max(120.0, n / 10),
    )
    summary = db.execute(
        "SELECT count(*), count(*) FILTER (WHERE status = 'completed'), max(finished_at),"
        f" count(*) FILTER (WHERE finished_at <= %s) FROM {table} WHERE created_at >= %s",
        [sent_ms, since_ms],
    ).fetchone()
    assert summary is not None
    total, completed, last_ms, done_when_sent = summary
    if (total, completed) != (n, n):
        raise RuntimeError(f"{total} jobs created, {completed} completed, expected {n}")
    return float(last_ms) / 1000, int(done_when_sent)


def submit_jobs(base_url: str, key: str, n: int, tag: str, threads: int) -> tuple[float, float]:
    """POST ``n`` new noop jobs from ``threads`` keep-alive clients; -> first, last (epoch s)."""
    errors: list[str] = []
    gate = threading.Barrier(threads + 1)

    def submitter(offset: int) -> None:
        headers = {"Authorization": f"Bearer {key}"}
        with LeanClient(base_url, headers) as client:
            gate.wait()
            for i in range(offset, n, threads):
                body = {"job_type": "noop", "input_params": {"bench": tag, "i": i}}
                try:
                    status, text = client.post("/api/jobs/submit", body)
                except OSError as exc:  # the API is gone (stopping), or broken
                    errors.append(repr(exc))
                    return
                if status != 201:
                    errors.append(f"{status} {text[:200]!r}")
                    return

    workers = [threading.Thread(target=submitter, args=(k,), daemon=True) for k in range(threads)]
    for worker in workers:
        worker.start()
    gate.wait()
    first = time.time()
    for worker in workers:
        worker.join()
    sent = time.time()
    if errors:
        raise RuntimeError(f"{len(errors)} submitter(s) failed, first: {errors[0]}")
    return first, sent


def start_runpack(
    procs: Processes,
    args: argparse.Namespace,
    database_url: str,
    stack: contextlib.ExitStack,
    baseline: Path | None = None,
) -> Runpack:
    """API, beat and worker of this checkout, or of ``baseline`` (its code first on the
    path, its own Redis database)."""
    redis_db = args.runpack_redis_db + (1 if baseline is not None else 0)
    prefix = "rp" if baseline is None else "base"
    redis_url = f"redis://{args.redis_host}/{redis_db}"
    redis.Redis.from_url(redis_url).flushdb()
    keys = {role: secrets.token_urlsafe(16) for role in ("submit", "runner", "admin")}
    broker_url = redis_url
    if args.broker == "amqp":
        broker_url = stack.enter_context(rabbitmq_vhost(args.amqp_url, prefix))
    env = runpack_env(keys, database_url, broker_url)
    env["RUNPACK_REDIS_URL"] = redis_url
    if baseline is not None:
        env["PYTHONPATH"] = str(baseline.resolve())
    cli = [sys.executable, "-m", "runpack_api.cli"]
    port = free_port()
    api_argv = [*cli, "api", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    api_argv += ["--workers", str(args.api_workers)]
    api = procs.spawn(f"{prefix}-api", api_argv, env, baseline)
    base_url = f"http://127.0.0.1:{port}"
    wait_for(
        lambda: api.poll() is None and httpx.get(f"{base_url}/health").json()["database"] == "ok",
        "runpack api",
    )
    beat = procs.spawn(f"{prefix}-beat", [*cli, "beat"], env, baseline)
    db = stack.enter_context(psycopg.connect(libpq_url(database_url), autocommit=True))
    worker_argv = [*cli, "worker", "--types", "noop", "--concurrency", str(args.concurrency)]
    runpack = Runpack(
        procs,
        env,
        base_url,
        keys,
        db,
        api,
        beat,
        threads=args.client_threads,
        prefix=prefix,
        cwd=baseline,
    )
    runpack.worker_argv = [*worker_argv, "--pool", args.pool]
    runpack.start_worker()
    runpack.run(WARMUP_JOBS, "warmup")
    return runpack


# --- the floor ------------------------------------------------------------------------------


@dataclass
class Floor:
    """The floor's API and worker (``bench/floor_app.py``) on a database of its own."""

    base_url: str
    key: str
    db: psycopg.Connection[Any]
    api: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    threads: int

    def groups(self) -> dict[str, int]:
        return {"floor-api": self.api.pid, "floor-worker": self.worker.pid}

    def run(self, n: int, tag: str) -> Timing:
        return submit_and_wait(self.db, "floor_jobs", self.base_url, self.key, n, tag, self.threads)


def start_floor(
    procs: Processes, args: argparse.Namespace, database_url: str, stack: contextlib.ExitStack
) -> Floor:
    """The floor's table in ``database_url``, its uvicorn API and Celery worker on raw
    Celery's Redis database (a queue of its own), with Runpack's Redis channel."""
    from bench.floor_app import SCHEMA

    url = libpq_url(database_url)
    db = stack.enter_context(psycopg.connect(url, autocommit=True))
    db.execute(SCHEMA)
    broker_url = f"redis://{args.redis_host}/{args.raw_redis_db}"
    if args.broker == "amqp":
        broker_url = stack.enter_context(rabbitmq_vhost(args.amqp_url, "floor"))
    key = secrets.token_urlsafe(16)
    queue = f"bench.floor.{secrets.token_hex(4)}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "FLOOR_DATABASE_URL": url,
        "FLOOR_BROKER_URL": broker_url,
        "FLOOR_QUEUE": queue,
        "FLOOR_API_KEY": key,
    }
    port = free_port()
    api_argv = [sys.executable, "-m", "uvicorn", "bench.floor_api:app", "--host", "127.0.0.1"]
    api_argv += ["--port", str(port), "--no-access-log", "--no-proxy-headers"]
    api = procs.spawn("floor-api", api_argv, env, ROOT)
    base_url = f"http://127.0.0.1:{port}"
    wait_for(
        lambda: api.poll() is None and httpx.get(f"{base_url}/health").status_code == 200,
        "the floor's API",
    )
    worker_argv = [sys.executable, "-m", "celery", "-A", "bench.floor_app", "worker"]
    worker_argv += ["-Q", queue, "--pool", args.pool, "--concurrency", str(args.concurrency)]
    worker = procs.spawn("floor-worker", worker_argv, env, ROOT)
    floor = Floor(base_url, key, db, api, worker, args.client_threads)
    floor.run(WARMUP_JOBS, "warmup")
    return floor


# --- the runs -------------------------------------------------------------------------------


@dataclass
class Results:
    raw: list[Rep] = field(default_factory=list)
    runpack: list[Rep] = field(default_factory=list)
    base: list[Rep] = field(default_factory=list)
    floor: list[Rep] = field(default_factory=list)
    rss_first: list[tuple[int, int]] = field(default_factory=list)
    rss_last: list[tuple[int, int]] = field(default_factory=list)
    memory_jobs: int = 0


def throughput_reps(
    raw: RawCelery,
    runpack: Runpack,
    args: argparse.Namespace,
    results: Results,
    base: Runpack | None = None,
    floor: Floor | None = None,
) -> None:
    groups = {"bench": os.getpid(), "raw-worker": raw.proc.pid, **runpack.groups()}
    database = database_of(runpack.db)  # raw Celery's too: it uses none
    if base is not None:
        groups.update(base.groups())
    if floor is not None:
        groups.update(floor.groups())
    for rep in range(1, args.reps + 1):
        runs: list[tuple[str, Callable[[int, str], Timing], list[Rep], str]] = [
            ("raw Celery", raw.run, results.raw, database)
        ]
        if floor is not None:
            runs.append(("floor", floor.run, results.floor, database_of(floor.db)))
        if base is not None:
            runs.append(("Runpack (base)", base.run, results.base, database_of(base.db)))
        runs.append(("Runpack", runpack.run, results.runpack, database))
        for label, run, store, watched_database in runs:
            watched = Watched(groups, watched_database)
            load = wait_for_quiet(
                functools.partial(foreign_load, watched.owners), args.quiet_wait, QUIET_CORES
            )
            if load >= QUIET_CORES:
                log(f"machine still busy ({load:.2f} cores of foreign load); measuring anyway")
            tag = f"rep{rep}-{secrets.token_hex(3)}"
            result = measured(watched, args.jobs, functools.partial(run, args.jobs, tag))
            store.append(result)
            log(describe(f"rep {rep} {label}", result))


def database_of(db: psycopg.Connection[Any]) -> str:
    """The name of the database ``db`` is connected to."""
    return db.info.dbname


def memory_run(runpack: Runpack, args: argparse.Namespace, results: Results) -> None:
    log("memory: starting a new Runpack worker")
    runpack.restart_worker()
    runpack.run(MEMORY_FIRST_JOBS, f"mem-first-{secrets.token_hex(3)}")
    time.sleep(1.0)
    results.rss_first = runpack.worker_rss()
    log(f"memory: after {MEMORY_FIRST_JOBS} jobs: {rss_text(results.rss_first)}")
    rest = args.memory_jobs - MEMORY_FIRST_JOBS
    started = time.monotonic()
    runpack.run(rest, f"mem-rest-{secrets.token_hex(3)}")
    time.sleep(1.0)
    results.rss_last = runpack.worker_rss()
    results.memory_jobs = args.memory_jobs
    log(
        f"memory: after {args.memory_jobs} jobs ({rest / (time.monotonic() - started):.0f}"
        f" jobs/s): {rss_text(results.rss_last)}"
    )


def rss_text(rss: list[tuple[int, int]]) -> str:
    parts = " + ".join(f"{kib / 1024:.1f}" for _, kib in rss)
    return f"{sum(k for _, k in rss) / 1024:.1f} MiB ({parts})"


def duplicate_messages(log_dir: Path) -> int:
    """Messages the Runpack worker skipped because their job was no longer pending."""
    return sum(
        path.read_text(errors="replace").count("is no longer pending")
        for path in log_dir.glob("*-worker*.log")  # raw Celery's never says it
    )


# --- report ---------------------------------------------------------------------------------


def drains(reps: list[Rep]) -> list[float]:
    return [r.drain_rate for r in reps if r.drain_rate == r.drain_rate] or [float("nan")]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def ratio_text(over: list[Rep], under: list[Rep]) -> tuple[float, str]:
    """The ratio of the median rates, and that text with the per-repetition ratios."""
    ratio = statistics.median(r.rate for r in over) / statistics.median(r.rate for r in under)
    per_rep = [a.rate / b.rate for a, b in zip(over, under, strict=True)]
    return ratio, f"{ratio:.2f}x (per rep {spread(per_rep, '.2f')})"


def runpack_rows(label: str, reps: list[Rep], raw: list[Rep]) -> list[list[str]]:
    """A Runpack's rates, and its ratio to raw Celery (target and verdict left to fill)."""
    return [
        [f"{label} e2e (jobs/s)", spread([r.rate for r in reps]), "", ""],
        [f"{label} submit rate meanwhile (/s)", spread([r.send_rate for r in reps]), "", ""],
        [f"{label} backlog drain, worker alone (/s)", spread(drains(reps)), "", ""],
        [f"{label} / raw Celery (of medians)", ratio_text(reps, raw)[1], "", ""],
    ]


def table_rows(results: Results, args: argparse.Namespace) -> tuple[list[list[str]], bool]:
    raw, rp = results.raw, results.runpack
    ratio = ratio_text(rp, raw)[0]
    other = [r.other_cores for r in raw + rp + results.base + results.floor]
    rows = [
        ["what", "median [min-max]", "target", "result"],
        ["raw Celery e2e (tasks/s)", spread([r.rate for r in raw]), "", ""],
        ["raw Celery publish rate meanwhile (/s)", spread([r.send_rate for r in raw]), "", ""],
        ["raw Celery backlog drain, worker alone (/s)", spread(drains(raw)), "", ""],
    ]
    if results.floor:
        rows += runpack_rows("floor", results.floor, raw)
    if results.base:
        rows += runpack_rows("Runpack (base)", results.base, raw)
    rows += runpack_rows("Runpack", rp, raw)
    rows[-1][2:] = [f">= {args.target_ratio:g}x", verdict(ratio >= args.target_ratio)]
    if results.base:
        rows.append(["Runpack / Runpack (base)", ratio_text(rp, results.base)[1], "", ""])
    if results.floor:
        rows.append(["Runpack / floor", ratio_text(rp, results.floor)[1], "", ""])
    rows.append(["other cpu during reps (cores)", spread(other, ".2f"), "", ""])
    passed = ratio >= args.target_ratio
    if results.rss_first:
        first = sum(k for _, k in results.rss_first) / 1024
        last = sum(k for _, k in results.rss_last) / 1024
        growth = 100 * (last - first) / first
        ok = growth <= args.target_growth
        passed = passed and ok
        rows += [
            [f"worker RSS after {MEMORY_FIRST_JOBS} jobs (MiB)", f"{first:.1f}", "", ""],
            [f"worker RSS after {results.memory_jobs} jobs (MiB)", f"{last:.1f}", "", ""],
            ["worker RSS growth", f"{growth:+.1f}%", f"<= {args.target_growth:g}%", verdict(ok)],
        ]
    return rows, passed


def print_cpu(results: Results) -> None:
    """Median CPU ms per task/job of each process group, for both runs."""
    runs = [("raw Celery", results.raw), ("floor", results.floor), ("Runpack (base)", results.base)]
    for label, reps in [*runs, ("Runpack", results.runpack)]:
        if not reps:
            continue
        names = sorted({name for r in reps for name, ms in r.cpu_ms.items() if ms >= 0.005})
        cpu = ", ".join(
            f"{n} {statistics.median(r.cpu_ms.get(n, 0) for r in reps):.2f}" for n in names
        )
        print(f"CPU ms per {label} job (median): {cpu}")


def print_header(args: argparse.Namespace) -> None:
    load = Path("/proc/loadavg").read_text().split()[:3]
    log(
        f"celery_bench: N={args.jobs} reps={args.reps} pool={args.pool} "
        f"c={args.concurrency} client threads={args.client_threads} "
        f"api workers={args.api_workers} raw events={args.raw_events} "
        f"raw channel={args.raw_channel} broker={args.broker} "
        f"memory={'skip' if args.skip_memory else args.memory_jobs}; "
        f"nproc={os.cpu_count()} loadavg {' '.join(load)}"
    )


# --- main -----------------------------------------------------------------------------------


def run(args: argparse.Namespace, log_dir: Path) -> Results:
    results = Results()
    procs = Processes(log_dir, cwd=ROOT)
    with contextlib.ExitStack() as stack:
        stack.callback(flush_redis, args)
        database_url = stack.enter_context(fresh_database(args.pg_url))
        stack.callback(procs.stop_all)
        log(f"database {database_url.rsplit('/', 1)[1]}; logs in {log_dir}")
        raw = start_raw_celery(procs, args, stack)
        runpack = start_runpack(procs, args, database_url, stack)
        base = None
        if args.baseline is not None:
            base_url = stack.enter_context(fresh_database(args.pg_url))
            base = start_runpack(procs, args, base_url, stack, baseline=args.baseline)
        floor = None
        if args.floor:
            floor = start_floor(
                procs, args, stack.enter_context(fresh_database(args.pg_url)), stack
            )
        log("raw Celery and Runpack are up and warmed")
        throughput_reps(raw, runpack, args, results, base, floor)
        if not args.skip_memory:
            stop(raw.proc)
            memory_run(runpack, args, results)
        log(f"duplicate messages skipped by Runpack workers: {duplicate_messages(log_dir)}")
    return results


def flush_redis(args: argparse.Namespace) -> None:
    for db in (args.raw_redis_db, args.runpack_redis_db, args.runpack_redis_db + 1):
        with contextlib.suppress(redis.RedisError):
            redis.Redis.from_url(f"redis://{args.redis_host}/{db}").flushdb()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_on_signals()  # SIGTERM raises KeyboardInterrupt
    print_header(args)
    log_dir = Path(tempfile.mkdtemp(prefix="celery_bench-"))
    keep = args.keep_logs
    try:
        results = run(args, log_dir)
    except BaseException as exc:
        keep = True
        if not isinstance(exc, KeyboardInterrupt):
            traceback.print_exc()
        print(f"celery_bench failed: {exc!r}; logs kept in {log_dir}", file=sys.stderr)
        return 2
    finally:
        if not keep:
            shutil.rmtree(log_dir, ignore_errors=True)
    rows, passed = table_rows(results, args)
    print()
    print_table(rows)
    print_cpu(results)
    if keep:
        print(f"logs: {log_dir}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
