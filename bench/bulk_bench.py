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
``batch / single`` divides the medians. With ``--cli-jobs N`` (PostgreSQL only) it then
times ``runpack submit noop --params-file F`` of N new jobs (JSON lines), end to end: the
CLI reading the file, its batches, the server's writes.

The machine may be shared: figures are only comparable within one run.

    /work/venv/bin/python bench/bulk_bench.py                      # both backends, 3 reps
    /work/venv/bin/python bench/bulk_bench.py --backends postgres --cli-jobs 100000
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
from pathlib import Path

import orjson
from harness import LeanClient, fresh_database, print_table, runpack_env, spread
from http_bench import KEYS, SCENARIOS, LoadOptions, Target, run_wrk, uvicorn

from runpack_tasks.jobstore.schema import upgrade

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
BATCH_PATH = "/api/jobs/submit-batch"


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
    return parser.parse_args()


@contextlib.contextmanager
def api(name: str, args: argparse.Namespace, workdir: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The API on a fresh database of backend ``name``: (its URL, its environment)."""
    with contextlib.ExitStack() as stack:
        if name == "embedded":
            url = f"sqlite:///{workdir / 'bench.db'}"
            upgrade(url)
            env = runpack_env(KEYS, url)
        else:
            url = stack.enter_context(fresh_database(args.pg_url))
            env = runpack_env(KEYS, url, args.redis_url)
        base_url = stack.enter_context(
            uvicorn(["--factory", "runpack_api.app:app_from_env"], "/health", env, workdir, 1, name)
        )
        yield base_url, env


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


def batch_rate(base_url: str, args: argparse.Namespace) -> tuple[float, float]:
    """New jobs per second through submit-batch, and the median latency of a batch (ms)."""
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

    started = time.monotonic()
    threads = [threading.Thread(target=run) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return created[0] / (time.monotonic() - started), statistics.median(latencies)


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


def main() -> int:
    args = parse_args()
    rows = [
        ["backend", "single jobs/s", "single p99 ms", "batch jobs/s", "batch ms", "batch / single"]
    ]
    cli_rows = []
    for name in args.backends.split(","):
        with (
            tempfile.TemporaryDirectory(prefix="bulk-bench-") as tmp,
            api(name, args, Path(tmp)) as (base_url, env),
        ):
            singles, p99s, batches, batch_ms = [], [], [], []
            for rep in range(args.reps):
                rate, p99 = single_rate(base_url, args)
                singles.append(rate)
                p99s.append(p99)
                rate, latency = batch_rate(base_url, args)
                batches.append(rate)
                batch_ms.append(latency)
                print(
                    f"[{name} {rep + 1}/{args.reps}] single {singles[-1]:.0f}/s, "
                    f"batch {batches[-1]:.0f}/s",
                    flush=True,
                )
            ratio = statistics.median(batches) / statistics.median(singles)
            rows.append(
                [
                    name,
                    spread(singles),
                    spread(p99s),
                    spread(batches),
                    spread(batch_ms),
                    f"{ratio:.1f}x",
                ]
            )
            if args.cli_jobs and name == "postgres":
                seconds = cli_seconds(base_url, env, args.cli_jobs, Path(tmp))
                cli_rows.append(
                    [name, str(args.cli_jobs), f"{seconds:.1f}", f"{args.cli_jobs / seconds:.0f}"]
                )
    print(
        f"\nhost: {os.cpu_count()} cores, shared; {args.reps} reps of {args.seconds} s; "
        f"{args.batch}-job batches from {args.clients} connections; wrk -c{args.connections}"
    )
    print_table(rows)
    if cli_rows:
        print()
        print_table([["backend", "jobs", "runpack submit --params-file (s)", "jobs/s"], *cli_rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
