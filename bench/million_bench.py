"""The hot requests at 1,000 and at 1,000,000 finished jobs in PostgreSQL.

A fresh database ``runpack_bench_<random>`` on ``--pg-url`` (dropped WITH (FORCE) at the
end) gets 1,000 completed jobs, inserted in bulk by PostgreSQL itself (one INSERT ...
SELECT FROM generate_series), then ANALYZE. One ``runpack api --no-access-log`` serves it
(filesystem broker, no worker: nothing is run). Each request below is sent ``--reps``
times over one keep-alive connection and timed here; the table shows the median (and the
slowest) in milliseconds. Then the table is filled up to ``--rows`` (default 1,000,000)
the same way, ANALYZEd, and everything is measured again.

- submit, cache hit from the table: a different completed job each time (its hash found
  in the table; the API's in-memory result cache has not seen it)
- submit, cache hit in memory: the same completed job again and again
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

    python bench/million_bench.py                       # 1k, then 1M rows
    python bench/million_bench.py --rows 100000 --reps 20   # quicker
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import sqlalchemy as sa
from harness import HOST, Processes, free_port, fresh_database, log, print_table, runpack_env

from runpack_tasks.jobstore import counting, lifecycle, queries
from runpack_tasks.jobstore.db import create_db_engine
from runpack_tasks.jobstore.hashing import job_hash

FILLED_TYPE = "filled"
NEW_TYPE = "fresh"
#: Completed jobs the cache-hit submits use, spread over the table.
SAMPLES = 400

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


def timed(reps: int, call: Callable[[int], httpx.Response]) -> list[float]:
    found = []
    for i in range(reps):
        started = time.perf_counter()
        answer = call(i)
        found.append((time.perf_counter() - started) * 1000)
        if answer.status_code >= 400:
            raise RuntimeError(f"{answer.request.url}: {answer.status_code} {answer.text[:200]}")
    return found


def timed_calls(reps: int, call: Callable[[], object]) -> list[float]:
    """Milliseconds of each of ``reps`` direct calls to the job store (no HTTP)."""
    found = []
    for _ in range(reps):
        started = time.perf_counter()
        call()
        found.append((time.perf_counter() - started) * 1000)
    return found


def measure(
    client: httpx.Client, engine: sa.Engine, keys: dict[str, str], rows: int, reps: int
) -> dict[str, list[float]]:
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    submit = {"Authorization": f"Bearer {keys['submit']}"}
    runner_key = {"Authorization": f"Bearer {keys['runner']}"}
    step = max(1, rows // SAMPLES)
    samples = [g for g in range(1, rows + 1, step)]
    sample_iter = iter(reversed(samples))  # the newest sampled first: each used once
    results: dict[str, list[float]] = {}

    def post_submit(params: dict[str, object], job_type: str = FILLED_TYPE) -> httpx.Response:
        return client.post(
            "/api/jobs/submit",
            json={"job_type": job_type, "input_params": params},
            headers=submit,
        )

    # first: stats and /metrics below start background readings of the whole table
    store_samples = iter(reversed(samples[: len(samples) // 2]))  # not submitted over HTTP
    results["store only: submit of a completed job"] = timed_calls(
        reps, lambda: lifecycle.submit(engine, FILLED_TYPE, {"i": next(store_samples)})
    )
    results["store only: admin jobs, first page"] = timed_calls(
        reps, lambda: queries.list_jobs(engine, limit=50, count=False)
    )
    results["submit, cache hit from the table"] = timed(
        reps, lambda _i: post_submit({"i": next(sample_iter)})
    )
    results["submit, cache hit in memory"] = timed(reps, lambda _i: post_submit({"i": 1}))
    new_ids: list[str] = []

    def new_job(_i: int) -> httpx.Response:
        answer = post_submit({"n": uuid.uuid4().hex}, NEW_TYPE)
        new_ids.append(answer.json()["job_id"])
        return answer

    results["submit, new job"] = timed(reps, new_job)
    runner = client.post(
        "/api/runner/register",
        json={"name": "bench", "capabilities": [NEW_TYPE]},
        headers=runner_key,
    ).json()["runner_id"]
    as_runner = {**runner_key, "X-Runner-ID": runner}
    results["available (plain poll)"] = timed(
        reps,
        lambda _i: client.get(
            "/api/runner/jobs/available", params={"types[]": NEW_TYPE}, headers=as_runner
        ),
    )
    results["claim"] = timed(
        reps, lambda i: client.post(f"/api/runner/jobs/{new_ids[i]}/claim", headers=as_runner)
    )
    results["admin jobs, first page"] = timed(
        reps, lambda _i: client.get("/api/admin/jobs", params={"limit": 50}, headers=admin)
    )
    results["admin jobs, first page, completed"] = timed(
        reps,
        lambda _i: client.get(
            "/api/admin/jobs", params={"limit": 50, "status": "completed"}, headers=admin
        ),
    )
    total = rows + reps
    results["admin jobs, last page by offset"] = timed(
        max(3, reps // 10),
        lambda _i: client.get(
            "/api/admin/jobs", params={"limit": 50, "offset": total - 50}, headers=admin
        ),
    )
    with engine.connect() as conn:
        oldest = conn.execute(
            sa.text("SELECT created_at, id FROM jobs ORDER BY created_at, id LIMIT 1 OFFSET 50")
        ).one()
    cursor = f"{oldest.created_at}:{oldest.id}"
    results["admin jobs, last page by before"] = timed(
        reps,
        lambda _i: client.get(
            "/api/admin/jobs", params={"limit": 50, "before": cursor}, headers=admin
        ),
    )
    results["stats"] = timed(reps, lambda _i: client.get("/api/admin/stats", headers=admin))
    results["/metrics"] = timed(reps, lambda _i: client.get("/metrics"))
    for name, read in (
        ("count (direct, uncached)", counting.counts_by_type),
        ("run-time histogram (direct, uncached)", counting.run_time_histograms),
    ):
        results[name] = timed_calls(3, lambda read=read: read(engine))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=50)
    args = parser.parse_args()
    keys = {role: secrets.token_urlsafe(16) for role in ("submit", "runner", "admin")}
    base = int(time.time() * 1000) - args.rows * 10 - 86_400_000
    with (
        tempfile.TemporaryDirectory(prefix="million-bench-") as tmp,
        fresh_database(args.pg_url) as url,
    ):
        engine = create_db_engine(url, pool_size=1)
        env = runpack_env(keys, url, f"filesystem://{tmp}/broker")
        processes = Processes(Path(tmp))
        port = free_port()
        try:
            started = time.monotonic()
            fill(engine, 1, 1000, base)
            log(f"1,000 jobs loaded in {time.monotonic() - started:.1f} s")
            argv = [sys.executable, "-m", "runpack_api.cli", "api", "--host", HOST]
            processes.spawn("api", [*argv, "--port", str(port), "--no-access-log"], env)
            client = httpx.Client(base_url=f"http://{HOST}:{port}", timeout=120)
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("runpack api did not start")
                time.sleep(0.2)
            small = measure(client, engine, keys, 1000, args.reps)
            started = time.monotonic()
            fill(engine, 1001, args.rows, base)
            log(f"{args.rows:,} jobs in the table after {time.monotonic() - started:.0f} s")
            time.sleep(6)  # the API's count reading is older than its 5 s now
            large = measure(client, engine, keys, args.rows, args.reps)
            client.close()
        finally:
            processes.stop_all()
            engine.dispose()
    rows = [["request", "1k p50 ms", "1k max", f"{args.rows:,} p50 ms", "max", "ratio of p50"]]
    for name, values in small.items():
        big = large[name]
        p50_small, p50_big = statistics.median(values), statistics.median(big)
        rows.append(
            [
                name,
                f"{p50_small:.2f}",
                f"{max(values):.1f}",
                f"{p50_big:.2f}",
                f"{max(big):.1f}",
                f"{p50_big / p50_small:.2f}x",
            ]
        )
    print()
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
