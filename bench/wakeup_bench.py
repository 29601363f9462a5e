"""Wake-ups across API processes: submit-to-claim latency and what idle long polls cost.

Starts ``--apis`` (default 4) ``runpack api`` processes on loopback ports, on a fresh
PostgreSQL database ``runpack_bench_<random>`` (``--pg-url``, dropped WITH (FORCE) at the
end) and, with ``--bus redis`` (default), the Redis ``--redis-url`` for wake-ups (and rate
limits); ``--bus postgresql`` leaves Redis out, so wake-ups go through LISTEN/NOTIFY. No
Celery worker runs: jobs are taken by HTTP runners simulated here with asyncio and httpx
(register, long poll ``wait=25``, claim, complete), so one process can hold hundreds.

1. ``one runner``: one runner long-polling API 0; ``--samples`` jobs (unique parameters)
   submitted one at a time, in turn to each API. Latency: from just before the submit is
   sent to the claim's answer (both read here, one clock). Shown overall and by the API
   the job was submitted to.
2. ``idle``: ``--runners`` (default 200) runners spread evenly over the APIs, all waiting.
   Over ``--idle-s`` seconds (starting 12 s after they all waited: PostgreSQL's backends
   report their statistics up to 10 s late), the transactions (xact_commit + xact_rollback in
   pg_stat_database) of the bench database per second: everything the APIs asked of the
   database while only long polls were open (re-polls included, since a poll ends after
   its 25 s wait).
3. ``many runners``: the same runners; ``--samples`` jobs submitted one at a time in turn
   to each API, each waiting for its claim; latency as in 1, shown as p50, p99 and max.

Run from the repository root with the venv's Python:

    python bench/wakeup_bench.py                              # 4 APIs, Redis wake-ups
    python bench/wakeup_bench.py --bus postgresql             # LISTEN/NOTIFY
    python bench/wakeup_bench.py --runners 50 --samples 30 --idle-s 10   # quick

Everything listens on 127.0.0.1; the processes are stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa
from harness import HOST, Processes, free_port, fresh_database, log, print_table, runpack_env

from runpack_tasks.jobstore.db import create_db_engine, normalize_url
from runpack_tasks.jobstore.models import JOBS

JOB_TYPE = "wakebench"
LONG_POLL_S = 25
CLAIM_DEADLINE_S = 10.0
STATS_LAG_S = 12.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Bench:
    def __init__(self, urls: list[str], keys: dict[str, str]) -> None:
        self.urls = urls
        self.keys = keys
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
        self.clients = [
            httpx.AsyncClient(base_url=url, timeout=LONG_POLL_S + 30, limits=limits) for url in urls
        ]
        self.claimed: dict[str, float] = {}
        #: When a runner's long poll returned the job, and when its submit was answered.
        self.listed: dict[str, float] = {}
        self.answered: dict[str, float] = {}
        self.sent: dict[str, float] = {}
        self.claim_events: dict[str, asyncio.Event] = {}
        self.stopping = False

    def headers(self, role: str, runner_id: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.keys[role]}"}
        if runner_id:
            headers["X-Runner-ID"] = runner_id
        return headers

    async def register(self, api: int) -> str:
        answer = await self.clients[api].post(
            "/api/runner/register",
            json={"name": f"bench-{api}", "capabilities": [JOB_TYPE]},
            headers=self.headers("runner"),
        )
        answer.raise_for_status()
        return str(answer.json()["runner_id"])

    async def runner(self, api: int, runner_id: str) -> None:
        client = self.clients[api]
        headers = self.headers("runner", runner_id)
        while not self.stopping:
            try:
                answer = await client.get(
                    "/api/runner/jobs/available",
                    params={"types[]": JOB_TYPE, "wait": LONG_POLL_S},
                    headers=headers,
                )
            except httpx.HTTPError:
                if self.stopping:
                    return
                await asyncio.sleep(0.5)
                continue
            listed_at = time.perf_counter()
            jobs = answer.json().get("jobs", [])
            for job in jobs:
                self.listed.setdefault(job["job_id"], listed_at)
            random.shuffle(jobs)
            for job in jobs:
                claim = await client.post(
                    f"/api/runner/jobs/{job['job_id']}/claim", headers=headers
                )
                if claim.status_code != 200:
                    continue
                self.claimed[job["job_id"]] = time.perf_counter()
                if (event := self.claim_events.get(job["job_id"])) is not None:
                    event.set()
                await client.post(
                    f"/api/runner/jobs/{job['job_id']}/complete",
                    json={"output_data": {}},
                    headers=headers,
                )
                break

    async def submit_and_wait(self, api: int) -> tuple[str, float]:
        """One job submitted to ``api``: its id, and seconds until a runner's claim was
        answered."""
        started = time.perf_counter()
        answer = await self.clients[api].post(
            "/api/jobs/submit",
            json={"job_type": JOB_TYPE, "input_params": {"n": uuid.uuid4().hex}},
            headers=self.headers("submit"),
        )
        answer.raise_for_status()
        job_id = answer.json()["job_id"]
        self.answered[job_id] = time.perf_counter()
        self.sent[job_id] = started
        event = self.claim_events.setdefault(job_id, asyncio.Event())
        if job_id in self.claimed:
            event.set()
        await asyncio.wait_for(event.wait(), CLAIM_DEADLINE_S)
        return job_id, self.claimed[job_id] - started

    async def waiting(self) -> int:
        total = 0
        for client in self.clients:
            text = (await client.get("/metrics")).text
            found = re.search(r"^runpack_long_polls_waiting (\S+)$", text, re.MULTILINE)
            total += int(float(found.group(1))) if found else 0
        return total

    async def wait_for_waiting(self, count: int) -> None:
        deadline = time.monotonic() + 60
        while await self.waiting() < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {await self.waiting()} of {count} polls waiting")
            await asyncio.sleep(0.2)

    async def samples(self, count: int) -> list[tuple[int, str, float]]:
        found = []
        for i in range(count):
            api = i % len(self.urls)
            found.append((api, *await self.submit_and_wait(api)))
            await asyncio.sleep(random.uniform(0.05, 0.15))
        return found

    async def close(self) -> None:
        self.stopping = True
        for client in self.clients:
            await client.aclose()


def transactions(admin_url: str, database: str) -> int:
    engine = create_db_engine(admin_url, pool_size=1)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT xact_commit + xact_rollback FROM pg_stat_database"
                        " WHERE datname = :name"
                    ),
                    {"name": database},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def table_reads(url: str) -> dict[str, tuple[int, int, int]]:
    """(sequential scans, index scans, rows updated) by table of the bench database."""
    engine = create_db_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT relname, seq_scan, coalesce(idx_scan, 0), n_tup_upd"
                    " FROM pg_stat_user_tables"
                )
            ).all()
    finally:
        engine.dispose()
    return {name: (int(a), int(b), int(c)) for name, a, b, c in rows}


def stored_latencies(url: str, job_ids: list[str]) -> dict[str, float]:
    """claimed_at - created_at (seconds, millisecond resolution) of these jobs."""
    engine = create_db_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(JOBS.c.id, JOBS.c.claimed_at - JOBS.c.created_at).where(
                    JOBS.c.id.in_(job_ids)
                )
            ).all()
    finally:
        engine.dispose()
    return {job_id: int(delta) / 1000 for job_id, delta in rows}


def ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.1f}"


def print_steps(bench: Bench, job_ids: list[str]) -> None:
    """Where a job's submit-to-claim time goes, as the client sees it (p50 ms of each)."""
    steps = {
        "submit sent -> submit answered": [bench.answered[j] - bench.sent[j] for j in job_ids],
        "submit sent -> long poll answered": [bench.listed[j] - bench.sent[j] for j in job_ids],
        "long poll answered -> claim answered": [
            bench.claimed[j] - bench.listed[j] for j in job_ids
        ],
    }
    print_table(
        [
            ["step", "p50 ms", "p90 ms"],
            *([name, ms(v, 0.5), ms(v, 0.9)] for name, v in steps.items()),
        ]
    )


async def run(
    args: argparse.Namespace, urls: list[str], keys: dict[str, str], db: str, url: str
) -> None:
    bench = Bench(urls, keys)
    try:
        # 1. one runner, long-polling API 0
        one = asyncio.create_task(bench.runner(0, await bench.register(0)))
        await bench.wait_for_waiting(1)
        await bench.samples(4)  # warm-up: connections, caches
        single = await bench.samples(args.samples)
        one.cancel()
        stored = stored_latencies(url, [job_id for _, job_id, _ in single])
        rows = [["submitted to", "samples", "p50 ms", "p90 ms", "max ms", "stored p50", "p90"]]
        for api in [None, *range(len(urls))]:
            mine = [(j, v) for a, j, v in single if api is None or a == api]
            values, table = [v for _, v in mine], [stored[j] for j, _ in mine]
            rows.append(
                [
                    "any API" if api is None else f"API {api}",
                    str(len(mine)),
                    ms(values, 0.5),
                    ms(values, 0.9),
                    ms(values, 1),
                    ms(table, 0.5),
                    ms(table, 0.9),
                ]
            )
        print("\none runner long-polling API 0: submit-to-claim")
        print_table(rows)
        print_steps(bench, [job_id for _, job_id, _ in single])
        await asyncio.sleep(0.5)

        # 2. many runners, idle
        ids = [await bench.register(i % len(urls)) for i in range(args.runners)]
        tasks = [
            asyncio.create_task(bench.runner(i % len(urls), runner_id))
            for i, runner_id in enumerate(ids)
        ]
        await bench.wait_for_waiting(args.runners)
        # PostgreSQL's backends report their counts up to 10 s late once idle
        await asyncio.sleep(STATS_LAG_S)
        before, tables_before = transactions(args.pg_url, db), table_reads(url)
        started = time.monotonic()
        await asyncio.sleep(args.idle_s)
        elapsed = time.monotonic() - started
        idle_rate = (transactions(args.pg_url, db) - before) / elapsed
        tables = table_reads(url)
        per_table = ", ".join(
            f"{name}: {(now[0] - then[0]) / elapsed:.1f} seq + {(now[1] - then[1]) / elapsed:.1f}"
            f" index scans/s, {(now[2] - then[2]) / elapsed:.1f} rows updated/s"
            for name, now in sorted(tables.items())
            if (then := tables_before.get(name, (0, 0, 0))) != now
        )
        print(
            f"\nidle: {args.runners} runners long-polling {len(urls)} APIs for {args.idle_s:.0f} s:"
            f" {idle_rate:.1f} database transactions/s (all of the APIs' work, re-polls included)"
            f"\n  {per_table or 'no table read'}"
        )

        # 3. many runners, jobs one at a time
        await bench.samples(4)
        taken = await bench.samples(args.samples)
        many = [v for _, _, v in taken]
        table = list(stored_latencies(url, [job_id for _, job_id, _ in taken]).values())
        print(f"\n{args.runners} runners over {len(urls)} APIs: submit-to-claim")
        print_table(
            [
                ["samples", "p50 ms", "p99 ms", "max ms", "stored p50", "p99"],
                [
                    str(len(many)),
                    ms(many, 0.5),
                    ms(many, 0.99),
                    ms(many, 1),
                    ms(table, 0.5),
                    ms(table, 0.99),
                ],
            ]
        )
        for task in tasks:
            task.cancel()
    finally:
        await bench.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    parser.add_argument("--bus", choices=["redis", "postgresql"], default="redis")
    parser.add_argument("--apis", type=int, default=4)
    parser.add_argument("--runners", type=int, default=200)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--idle-s", type=float, default=30.0)
    args = parser.parse_args()
    keys = {role: secrets.token_urlsafe(16) for role in ("submit", "runner", "admin")}
    with (
        tempfile.TemporaryDirectory(prefix="wakeup-bench-") as tmp,
        fresh_database(args.pg_url) as url,
    ):
        db = str(normalize_url(url).database)
        if args.bus == "redis":
            env = runpack_env(keys, url, args.redis_url)
            env["RUNPACK_REDIS_URL"] = args.redis_url
        else:
            env = runpack_env(keys, url, f"filesystem://{tmp}/broker")
        processes = Processes(Path(tmp))
        ports = [free_port() for _ in range(args.apis)]
        try:
            for i, port in enumerate(ports):
                argv = [sys.executable, "-m", "runpack_api.cli", "api", "--host", HOST]
                processes.spawn(f"api{i}", [*argv, "--port", str(port), "--no-access-log"], env)
            urls = [f"http://{HOST}:{port}" for port in ports]
            for url_ in urls:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if httpx.get(f"{url_}/health").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{url_} did not start")
                    time.sleep(0.2)
            log(f"{args.apis} APIs up on database {db}, wake-ups through {args.bus}")
            asyncio.run(run(args, urls, keys, db, url))
        finally:
            processes.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
