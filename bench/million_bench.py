"""The hot requests at 1,000 and at 1,000,000 finished jobs in PostgreSQL, side by side.

Two fresh databases ``runpack_bench_<random>`` on ``--pg-url`` (dropped WITH (FORCE) at the
end) are prepared first: one gets 1,000 completed jobs, the other ``--rows`` (default
1,000,000), inserted in bulk by PostgreSQL itself (one INSERT ... SELECT FROM
generate_series), then VACUUM ANALYZE; then a CHECKPOINT and ``--settle`` seconds of
rest. Each database is served by its own ``runpack api --no-access-log`` (filesystem
broker, no worker: nothing is run), each over one keep-alive connection. Every request
kind below is sent ``--reps`` times to each side, alternately (1k, 1M, 1k, 1M, ...), so
both sides share whatever else the machine is doing at that moment. The table shows each
side's median in milliseconds, the ratio of the medians, and the median and 10th-90th
percentiles of the per-repetition ratios (the 1M request over the 1k one just before it).

- submit, cache hit from the table: a different completed job each time (its hash found
  in the table; the API's in-memory result cache has not seen it)
- submit, cache hit in memory: the same completed job again and again (once untimed first)
- submit, new job: unique parameters, so a pending job is inserted
- available: a runner's plain poll (wait=0) for that type, with those jobs pending
- claim: a runner claims each of those new jobs
- admin jobs, first page / first page of completed / last page by offset / a page deep
  in the table by ``before`` (the cursor of the 50th oldest job)
- stats, /metrics: counts come from the API's shared reading (RUNPACK_COUNTS_CACHE_S,
  5 s); "count (direct)" and "run-time histogram (direct)" are uncached readings of the
  counts the database keeps, the work a refresh does
- store only: the job store called from this process, no HTTP and no API process: the
  database's part of a cache-hit submit and of the first admin page

Run from the repository root with the venv's Python:

    python bench/million_bench.py --reps 40                 # 1k beside 1M rows
    python bench/million_bench.py --rows 100000 --reps 20   # quicker
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa
from harness import (
    HOST,
    Processes,
    free_port,
    fresh_database,
    log,
    print_table,
    runpack_env,
    wait_for,
)

from runpack_tasks.jobstore import counting, lifecycle, queries
from runpack_tasks.jobstore.db import create_db_engine
from runpack_tasks.jobstore.hashing import job_hash

FILLED_TYPE = "filled"
NEW_TYPE = "fresh"
#: Completed jobs the cache-hit submits use, spread over the table.
SAMPLES = 400
#: The requests whose 1M median should stay within 1.2x of the 1k one.
TARGET_RATIO = 1.2
TARGET_KINDS = (
    "submit, cache hit from the table",
    "submit, cache hit in memory",
    "claim",
    "admin jobs, first page",
    "stats",
)

FILL = sa.text(
    """
    INSERT INTO jobs (id, job_hash, job_type, input_params, status, created_at, updated_at,
                      claimed_by, claimed_at, last_heartbeat, finished_at, output_data,
                      attempts)
    SELECT gen_random_uuid()::text,
           encode(sha256(convert_to('fill' || g, 'UTF8')), 'hex'),
           :job_type,
           json_build_object('i', g),
           'completed',
           :base + g * 10, :base + g * 10 + 900,
           'bench-runner', :base + g * 10 + 100, :base + g * 10 + 800, :base + g * 10 + 900,
           json_build_object('ok', true),
           1
    FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g
    """
)


def fill(engine: sa.Engine, first: int, last: int, base: int) -> None:
    """Completed jobs ``first``..``last`` (``{"i": g}``), sample ones with their real hash."""
    with engine.begin() as conn:
        conn.execute(FILL, {"job_type": FILLED_TYPE, "base": base, "first": first, "last": last})
        step = max(1, (last - first + 1) // SAMPLES)
        for g in range(first, last + 1, step):
            conn.execute(
                sa.text(
                    "UPDATE jobs SET job_hash = :hash WHERE job_hash ="
                    " encode(sha256(convert_to('fill' || CAST(:g AS text), 'UTF8')), 'hex')"
                ),
                {"hash": job_hash(FILLED_TYPE, {"i": g}), "g": g},
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE jobs"))


@dataclass
class Side:
    """One database with its ``rows`` completed jobs, its API process and what was made there."""

    rows: int
    engine: sa.Engine
    client: httpx.Client
    keys: dict[str, str]
    table_hits: Iterator[int] = field(init=False)
    store_hits: Iterator[int] = field(init=False)
    new_ids: list[str] = field(default_factory=list)
    as_runner: dict[str, str] = field(default_factory=dict)
    cursor: str = ""

    def __post_init__(self) -> None:
        samples = list(range(1, self.rows + 1, max(1, self.rows // SAMPLES)))
        # the newest sampled first, each used once; the store's half is not submitted over HTTP
        self.table_hits = iter(reversed(samples))
        self.store_hits = iter(reversed(samples[: len(samples) // 2]))

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def submit(self, params: dict[str, object], job_type: str = FILLED_TYPE) -> httpx.Response:
        return self.client.post(
            "/api/jobs/submit",
            json={"job_type": job_type, "input_params": params},
            headers=self.auth("submit"),
        )

    def new_job(self) -> httpx.Response:
        answer = self.submit({"n": uuid.uuid4().hex}, NEW_TYPE)
        self.new_ids.append(answer.json()["job_id"])
        return answer

    def register(self) -> None:
        runner = self.client.post(
            "/api/runner/register",
            json={"name": "bench", "capabilities": [NEW_TYPE]},
            headers=self.auth("runner"),
        ).json()["runner_id"]
        self.as_runner = {**self.auth("runner"), "X-Runner-ID": runner}

    def admin_jobs(self, **params: str | int) -> httpx.Response:
        return self.client.get(
            "/api/admin/jobs", params={"limit": 50, **params}, headers=self.auth("admin")
        )

    def find_cursor(self) -> None:
        with self.engine.connect() as conn:
            oldest = conn.execute(
                sa.text("SELECT created_at, id FROM jobs ORDER BY created_at, id LIMIT 1 OFFSET 50")
            ).one()
        self.cursor = f"{oldest.created_at}:{oldest.id}"


@dataclass(frozen=True)
class Kind:
    """A request kind: ``call(side, i)`` for repetition ``i``, after ``setup(side)`` once."""

    name: str
    call: Callable[[Side, int], object]
    setup: Callable[[Side], object] | None = None
    #: Repetitions for ``--reps``.
    reps: Callable[[int], int] = lambda reps: reps


KINDS = (
    # first: stats and /metrics below start background readings of the counts
    Kind(
        "store only: submit of a completed job",
        lambda s, _i: lifecycle.submit(s.engine, FILLED_TYPE, {"i": next(s.store_hits)}),
    ),
    Kind(
        "store only: admin jobs, first page",
        lambda s, _i: queries.list_jobs(s.engine, limit=50, count=False),
    ),
    Kind("submit, cache hit from the table", lambda s, _i: s.submit({"i": next(s.table_hits)})),
    Kind(
        "submit, cache hit in memory",
        lambda s, _i: s.submit({"i": 1}),
        setup=lambda s: s.submit({"i": 1}),
    ),
    Kind("submit, new job", lambda s, _i: s.new_job()),
    Kind(
        "available (plain poll)",
        lambda s, _i: s.client.get(
            "/api/runner/jobs/available", params={"types[]": NEW_TYPE}, headers=s.as_runner
        ),
        setup=Side.register,
    ),
    Kind(
        "claim",
        lambda s, i: s.client.post(f"/api/runner/jobs/{s.new_ids[i]}/claim", headers=s.as_runner),
    ),
    Kind("admin jobs, first page", lambda s, _i: s.admin_jobs()),
    Kind("admin jobs, first page, completed", lambda s, _i: s.admin_jobs(status="completed")),
    Kind(
        "admin jobs, last page by offset",
        lambda s, _i: s.admin_jobs(offset=s.rows + len(s.new_ids) - 50),
        reps=lambda reps: max(3, reps // 10),
    ),
    Kind(
        "admin jobs, last page by before",
        lambda s, _i: s.admin_jobs(before=s.cursor),
        setup=Side.find_cursor,
    ),
    Kind("stats", lambda s, _i: s.client.get("/api/admin/stats", headers=s.auth("admin"))),
    Kind("/metrics", lambda s, _i: s.client.get("/metrics")),
    Kind(
        "count (direct, uncached)",
        lambda s, _i: counting.counts_by_type(s.engine),
        reps=lambda _reps: 3,
    ),
    Kind(
        "run-time histogram (direct, uncached)",
        lambda s, _i: counting.run_time_histograms(s.engine),
        reps=lambda _reps: 3,
    ),
)


def timed(side: Side, kind: Kind, i: int) -> float:
    """Milliseconds of one ``kind`` request to ``side``; raises on an HTTP error."""
    started = time.perf_counter()
    answer = kind.call(side, i)
    spent = (time.perf_counter() - started) * 1000
    if isinstance(answer, httpx.Response) and answer.status_code >= 400:
        raise RuntimeError(f"{answer.request.url}: {answer.status_code} {answer.text[:200]}")
    return spent


def measure(small: Side, large: Side, reps: int) -> dict[str, tuple[list[float], list[float]]]:
    """Per request kind, the milliseconds of each repetition on each side, sent alternately."""
    results: dict[str, tuple[list[float], list[float]]] = {}
    for kind in KINDS:
        if kind.setup is not None:
            kind.setup(small)
            kind.setup(large)
        found: tuple[list[float], list[float]] = ([], [])
        for i in range(kind.reps(reps)):
            found[0].append(timed(small, kind, i))
            found[1].append(timed(large, kind, i))
        results[kind.name] = found
    return results


def prepare(url: str, rows: int) -> sa.Engine:
    """``rows`` completed jobs in the database at ``url``, vacuumed and analyzed."""
    engine: sa.Engine = create_db_engine(url, pool_size=1)
    started = time.monotonic()
    base = int(time.time() * 1000) - rows * 10 - 86_400_000
    fill(engine, 1, rows, base)
    log(f"{rows:,} jobs loaded and vacuumed in {time.monotonic() - started:.1f} s")
    return engine


def serve(processes: Processes, name: str, env: dict[str, str]) -> httpx.Client:
    """Start ``runpack api`` with ``env``; a client of it once it answers /health."""
    port = free_port()
    argv = [sys.executable, "-m", "runpack_api.cli", "api", "--host", HOST, "--port", str(port)]
    processes.spawn(name, [*argv, "--no-access-log"], env)
    client = httpx.Client(base_url=f"http://{HOST}:{port}", timeout=120)
    wait_for(lambda: client.get("/health").status_code == 200, f"{name} to answer /health")
    return client


def report(results: dict[str, tuple[list[float], list[float]]], rows: int) -> None:
    table = [
        [
            "request",
            "1k p50 ms",
            f"{rows:,} p50 ms",
            "ratio of p50",
            "per-rep ratio p50 [p10-p90]",
        ]
    ]
    over = []
    for name, (small, large) in results.items():
        p50_small, p50_large = statistics.median(small), statistics.median(large)
        ratios = [b / a for a, b in zip(small, large, strict=True)]
        deciles = statistics.quantiles(ratios, n=10, method="inclusive")
        ratio = p50_large / p50_small
        if name in TARGET_KINDS and ratio > TARGET_RATIO:
            over.append(name)
        table.append(
            [
                name,
                f"{p50_small:.2f}",
                f"{p50_large:.2f}",
                f"{ratio:.2f}x",
                f"{statistics.median(ratios):.2f}x [{deciles[0]:.2f}-{deciles[-1]:.2f}]",
            ]
        )
    print()
    print_table(table)
    print(
        f"\nwithin {TARGET_RATIO}x (ratio of p50): "
        + ("all of " if not over else f"{len(TARGET_KINDS) - len(over)} of ")
        + "; ".join(TARGET_KINDS)
        + ("" if not over else f" (over: {'; '.join(over)})")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument(
        "--settle", type=float, default=10.0, help="seconds of rest after the CHECKPOINT"
    )
    args = parser.parse_args()
    if not 3 <= args.reps <= SAMPLES // 2:
        parser.error(f"--reps must be between 3 and {SAMPLES // 2}")
    keys = {role: secrets.token_urlsafe(16) for role in ("submit", "runner", "admin")}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="million-bench-")))
        small_url = stack.enter_context(fresh_database(args.pg_url))
        large_url = stack.enter_context(fresh_database(args.pg_url))
        small_engine = prepare(small_url, 1000)
        stack.callback(small_engine.dispose)
        large_engine = prepare(large_url, args.rows)
        stack.callback(large_engine.dispose)
        with large_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("CHECKPOINT"))
        log(f"CHECKPOINT done; {args.settle:.0f} s of rest")
        time.sleep(args.settle)
        processes = Processes(tmp)
        stack.callback(processes.stop_all)
        sides = []
        for rows, engine, url in (
            (1000, small_engine, small_url),
            (args.rows, large_engine, large_url),
        ):
            env = runpack_env(keys, url, f"filesystem://{tmp}/broker-{rows}")
            client = serve(processes, f"api-{rows}", env)
            stack.callback(client.close)
            sides.append(Side(rows, engine, client, keys))
        results = measure(sides[0], sides[1], args.reps)
    report(results, args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
