"""Bulk submission beside single submits, in one run, on SQLite and PostgreSQL.

For each backend (``embedded``: a SQLite file; ``postgres``: a fresh PostgreSQL database
plus the loopback Redis at ``--redis-url``), one API server (uvicorn, the options of
``http_bench.py``, rate limits off) is measured on:

- ``single``  new-job ``POST /api/jobs/submit``, every request a job never seen before
              (wrk with ``lua/new_submit.lua``, ``-c`` connections): jobs created per second.
- ``batch``   ``POST /api/jobs/submit-batch`` of ``--batch`` new jobs each, from
              ``--clients`` keep-alive connections (bodies built before the clock starts):
              jobs created per second, and the latency of one batch.

The two are interleaved ``--reps`` times; the table shows ``median [min-max]``, and
``batch / single`` divides the medians. ``batch CPU us/job`` is the API process's CPU time
(user + system, all its threads) during the batch runs per job created: steadier than
jobs/s on a shared machine.

``--baseline DIR`` also serves the API from another checkout of the repository (a git
worktree of an older commit: ``git worktree add /tmp/base <commit>``), on a database of its
own (``--base-redis-url``: its Redis, by default ``--redis-url``'s), and runs every
measurement on both, interleaved, so a change shows its before and after in one run: rows
marked ``(base)`` are the baseline's, and a last table compares the two.

With ``--cli-jobs N`` (PostgreSQL only) it then times ``runpack submit noop --params-file F``
of N new jobs (JSON lines), end to end: the CLI reading the file, its batches, the
server's writes.

The machine may be shared: figures are only comparable within one run.

    /work/venv/bin/python bench/bulk_bench.py                      # both backends, 3 reps
    /work/venv/bin/python bench/bulk_bench.py --backends postgres --cli-jobs 100000
    /work/venv/bin/python bench/bulk_bench.py --baseline /tmp/base  # before/after, one run
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from harness import LeanClient, fresh_database, print_table, runpack_env, spread
from http_bench import KEYS, OUR_GROUPS, SCENARIOS, LoadOptions, Target, run_wrk, uvicorn

from runpack_tasks.jobstore.schema import upgrade

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
BATCH_PATH = "/api/jobs/submit-batch"
#: The label of the server running ``--baseline``'s code.
BASE = "base"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="embedded,postgres")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("-d", "--seconds", type=int, default=5, help="each measurement (s)")
    parser.add_argument("-c", "--connections", type=int, default=32, help="wrk, single")
    parser.add_argument("--batch", type=int, default=1000, help="jobs per batch")
    parser.add_argument("--clients", type=int, default=2, help="batch connections")
    parser.add_argument("--cli-jobs", type=int, default=0, help="time the CLI (PostgreSQL)")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another checkout of this repository to measure side by side (before/after)",
    )
    parser.add_argument("--base-redis-url", default=None, help="the baseline's Redis")
    args = parser.parse_args()
    if args.baseline is not None and not (args.baseline / "runpack_api").is_dir():
        parser.error(f"--baseline {args.baseline} is not a checkout of this repository")
    return args


@dataclass
class Server:
    """One API server under test: its URL, environment and process id."""

    url: str
    env: dict[str, str]
    pid: int


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) process ``pid`` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def api(name: str, args: argparse.Namespace, workdir: Path, label: str) -> Iterator[Server]:
    """The API on a fresh database of backend ``name`` (from ``--baseline`` when ``label``
    is BASE)."""
    with contextlib.ExitStack() as stack:
        if name == "embedded":
            url = f"sqlite:///{workdir / 'bench.db'}"
            upgrade(url)
            env = runpack_env(KEYS, url)
        else:
            url = stack.enter_context(fresh_database(args.pg_url))
            redis_url = args.redis_url
            if label == BASE and args.base_redis_url is not None:
                redis_url = args.base_redis_url
            env = runpack_env(KEYS, url, redis_url)
        if label == BASE:
            env = env | {"PYTHONPATH": str(args.baseline.resolve())}
        started = set(OUR_GROUPS)
        base_url = stack.enter_context(
            uvicorn(
                ["--factory", "runpack_api.app:app_from_env"],
                "/health",
                env,
                workdir,
                1,
                f"{name}-{label}",
            )
        )
        [pid] = OUR_GROUPS - started
        yield Server(base_url, env, pid)


def single_rate(base_url: str, args: argparse.Namespace) -> tuple[float, float]:
    """New-job single submits per second under wrk, and their p99 (ms)."""
    load = LoadOptions(2, args.connections, args.seconds, 0, 0)
    result = run_wrk(SCENARIOS["submit-new"], Target(base_url), load, args.seconds)
    if result.non_2xx:
        raise RuntimeError(f"single submits failed: {result}")
    if result.socket_errors:  # wrk's 2 s timeout: the SQLite tail, on a busy machine
        print(f"  ({result.socket_errors} wrk socket errors/timeouts)", flush=True)
    return result.rps, result.p99_ms


def batch_bodies(count: int, size: int) -> list[bytes]:
    prefix = secrets.token_hex(6)
    return [
        orjson.dumps(
            {
                "jobs": [
                    {"job_type": "noop", "input_params": {"n": n, "batch": f"{prefix}-{b}"}}
                    for n in range(size)
                ]
            }
        )
        for b in range(count)
    ]


def batch_rate(server: Server, args: argparse.Namespace) -> tuple[float, float, float]:
    """New jobs per second through submit-batch, the median latency of a batch (ms), and
    the server's CPU microseconds per job created."""
    base_url = server.url
    # enough bodies for a generous rate (30 batches/s), built before the clock starts
    bodies = batch_bodies(args.seconds * 30, args.batch)
    taken = iter(bodies)
    lock = threading.Lock()
    created = [0]
    latencies: list[float] = []
    deadline = time.monotonic() + args.seconds

    def run() -> None:
        with LeanClient(base_url, {"Authorization": f"Bearer {KEYS['submit']}"}) as client:
            while time.monotonic() < deadline:
                with lock:
                    body = next(taken, None)
                if body is None:
                    return
                started = time.monotonic()
                status, answer = client.post_encoded(BATCH_PATH, body)
                if status != 200:
                    raise RuntimeError(f"batch answered {status}: {answer[:300]!r}")
                made = sum(item["created"] for item in orjson.loads(answer)["results"])
                with lock:
                    created[0] += made
                    latencies.append((time.monotonic() - started) * 1000)

    started, cpu_started = time.monotonic(), cpu_s(server.pid)
    threads = [threading.Thread(target=run) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu_us = (cpu_s(server.pid) - cpu_started) * 1e6 / max(1, created[0])
    return created[0] / (time.monotonic() - started), statistics.median(latencies), cpu_us


def cli_seconds(base_url: str, env: dict[str, str], jobs: int, workdir: Path) -> float:
    """Wall-clock seconds of ``runpack submit noop --params-file F`` for ``jobs`` new jobs."""
    path = workdir / "jobs.jsonl"
    prefix = secrets.token_hex(6)
    path.write_bytes(b"\n".join(orjson.dumps({"n": n, "cli": prefix}) for n in range(jobs)))
    cli_env = env | {"RUNPACK_URL": base_url}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "runpack_api.cli", "submit", "noop", "--params-file", str(path)],
        env=cli_env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    expected = f"submitted {jobs} job(s): {jobs} created"
    if done.returncode != 0 or not done.stdout.startswith(expected):
        raise RuntimeError(f"the CLI failed: {done.stdout[-500:]} {done.stderr[-2000:]}")
    return elapsed


@dataclass
class Runs:
    """One server's measurements on one backend."""

    singles: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)
    batches: list[float] = field(default_factory=list)
    batch_ms: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)

    def ratio(self) -> float:
        return statistics.median(self.batches) / statistics.median(self.singles)


def measure(name: str, args: argparse.Namespace, cli_rows: list[list[str]]) -> dict[str, Runs]:
    """Every repetition on backend ``name``, the servers' runs interleaved."""
    labels = ["now"] if args.baseline is None else ["now", BASE]
    runs = {label: Runs() for label in labels}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bulk-bench-")))
        servers = {}
        for label in labels:
            (tmp / label).mkdir()
            servers[label] = stack.enter_context(api(name, args, tmp / label, label))
        for rep in range(args.reps):
            for label in labels:
                server, done = servers[label], runs[label]
                rate, p99 = single_rate(server.url, args)
                done.singles.append(rate)
                done.p99s.append(p99)
                rate, latency, cpu_us = batch_rate(server, args)
                done.batches.append(rate)
                done.batch_ms.append(latency)
                done.cpu_us.append(cpu_us)
                print(
                    f"[{name}{'' if label == 'now' else ' (base)'} {rep + 1}/{args.reps}] "
                    f"single {done.singles[-1]:.0f}/s, batch {done.batches[-1]:.0f}/s "
                    f"({cpu_us:.0f} us CPU/job)",
                    flush=True,
                )
        if args.cli_jobs and name == "postgres":
            server = servers["now"]
            seconds = cli_seconds(server.url, server.env, args.cli_jobs, tmp / "now")
            cli_rows.append(
                [name, str(args.cli_jobs), f"{seconds:.1f}", f"{args.cli_jobs / seconds:.0f}"]
            )
    return runs


def main() -> int:
    args = parse_args()
    rows = [
        [
            "backend",
            "single jobs/s",
            "single p99 ms",
            "batch jobs/s",
            "batch ms",
            "batch CPU us/job",
            "batch / single",
        ]
    ]
    compared = [["backend", "base batch / single", "now batch / single", "batch jobs/s now / base"]]
    cli_rows: list[list[str]] = []
    for name in args.backends.split(","):
        runs = measure(name, args, cli_rows)
        for label, done in runs.items():
            rows.append(
                [
                    name if label == "now" else f"{name} (base)",
                    spread(done.singles),
                    spread(done.p99s),
                    spread(done.batches),
                    spread(done.batch_ms),
                    spread(done.cpu_us),
                    f"{done.ratio():.1f}x",
                ]
            )
        if BASE in runs:
            now, base = runs["now"], runs[BASE]
            speedup = statistics.median(now.batches) / statistics.median(base.batches)
            compared.append(
                [name, f"{base.ratio():.1f}x", f"{now.ratio():.1f}x", f"{speedup:.2f}x"]
            )
    print(
        f"\nhost: {os.cpu_count()} cores, shared; {args.reps} reps of {args.seconds} s; "
        f"{args.batch}-job batches from {args.clients} connections; wrk -c{args.connections}"
    )
    print_table(rows)
    if len(compared) > 1:
        print("\nbefore (--baseline) and after (this checkout), interleaved in this run:")
        print_table(compared)
    if cli_rows:
        print()
        print_table([["backend", "jobs", "runpack submit --params-file (s)", "jobs/s"], *cli_rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
