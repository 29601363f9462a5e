"""What a Celery worker's claim and completion of one job cost in the store, on PostgreSQL.

Each variant claims and completes ``--jobs`` pending jobs one after the other from this
process, as a prefork pool process does (the claim's commit not waiting for the disk, the
completion's durable), on a fresh database of its own (``harness.fresh_database``):

- ``runpack``: ``lifecycle.claim_many`` and ``lifecycle.complete_many`` of one job each,
  the calls the worker's task and its ``task_success`` signal make (the engine's pool,
  every column returned and read into a ``JobRow``).
- ``same SQL, psycopg``: the very statements those calls send (their compiled text and
  parameters), sent on two plain psycopg connections in autocommit, their rows left unread.
- ``... no secondary indexes``: the same, after dropping the ``jobs`` table's six
  secondary indexes (leaving the primary key and the unique hash).
- ``... no count triggers``: the same, with the table's count triggers disabled instead.
- ``floor table``: the floor's statements on its own table (``bench/floor_app.py``).

Per job it prints the wall time, this process's CPU and the database server's CPU (its
backends for that database), ``median [min-max]`` over ``--reps`` repetitions, the variants
interleaved in each. Only the first variant is Runpack as it runs; the others show what
its table and its store path cost.

    python bench/store_bench.py [--jobs 2000] [--reps 3] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
from harness import (
    cpu_sample,
    cpu_usage,
    fresh_database,
    libpq_url,
    print_table,
    server_pids,
    spread,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine  # noqa: E402

from bench.floor_app import CLAIM as FLOOR_CLAIM  # noqa: E402
from bench.floor_app import COMPLETE as FLOOR_COMPLETE  # noqa: E402
from bench.floor_app import INSERT as FLOOR_INSERT  # noqa: E402
from bench.floor_app import OUTPUT, open_connections  # noqa: E402
from bench.floor_app import SCHEMA as FLOOR_SCHEMA  # noqa: E402
from runpack_tasks.jobstore import lifecycle  # noqa: E402
from runpack_tasks.jobstore.db import create_db_engine  # noqa: E402
from runpack_tasks.jobstore.hashing import job_hash  # noqa: E402

RUNNER = "store-bench@localhost"
SECONDARY_INDEXES = (
    "ix_jobs_status_type_created",
    "ix_jobs_type_created",
    "ix_jobs_created",
    "ix_jobs_claimed_by_updated",
    "ix_jobs_status_type_published",
    "ix_jobs_status_finished",
)


@dataclass
class Figures:
    wall_us: float
    cpu_us: float
    server_us: float


@dataclass
class Database:
    """A variant's fresh database: an admin connection, and its URL for psycopg and for
    SQLAlchemy."""

    admin: psycopg.Connection[Any]
    url: str
    sa_url: str


@dataclass
class Variant:
    name: str
    #: (its database, n) -> a function claiming and completing job number i
    prepare: Callable[[Database, int], Callable[[int], None]]


def runpack_jobs(url: str, n: int) -> list[str]:
    """``n`` pending noop jobs, created as the API creates them; their ids."""
    engine = create_db_engine(url, pool_size=1)
    try:
        submissions = [
            lifecycle.Submission("noop", {"i": i}, job_hash("noop", {"i": i})) for i in range(n)
        ]
        return [outcome.job.id for outcome in lifecycle.submit_many(engine, submissions)]
    finally:
        engine.dispose()


def runpack_path(db: Database, n: int) -> Callable[[int], None]:
    ids = runpack_jobs(db.sa_url, n)
    engine = create_db_engine(db.sa_url, pool_size=2)
    _open.append(engine)

    def one(i: int) -> None:
        (job,) = lifecycle.claim_many(engine, [ids[i]], RUNNER)
        assert job is not None
        result = lifecycle.Completion(job.id, {"ok": True}, "", None)
        assert lifecycle.complete_many(engine, RUNNER, [result]) == [True]

    return one


def plain_path(*setup: str) -> Callable[[Database, int], Callable[[int], None]]:
    def prepare(db: Database, n: int) -> Callable[[int], None]:
        for statement in setup:
            db.admin.execute(statement)
        ids = runpack_jobs(db.sa_url, n)
        engine = create_db_engine(db.sa_url, pool_size=1)
        claim_sql, claim_defaults = compiled(lifecycle._CLAIM, engine)
        complete_sql, complete_defaults = compiled(lifecycle._COMPLETE, engine)
        engine.dispose()
        claim, complete = connections(db.url)

        def one(i: int) -> None:
            now = lifecycle.now_ms()
            given = {"job_id": ids[i], "runner_id": RUNNER, "now": now}
            assert claim.execute(claim_sql, {**claim_defaults, **given}).rowcount == 1
            reported = {"new_output_data": OUTPUT, "new_console_output": "", **given}
            assert complete.execute(complete_sql, {**complete_defaults, **reported}).rowcount == 1

        return one

    return prepare


def floor_path(db: Database, n: int) -> Callable[[int], None]:
    db.admin.execute(FLOOR_SCHEMA)
    ids = []
    for i in range(n):
        row = db.admin.execute(FLOOR_INSERT, [f"h{i}", "noop", orjson.dumps({"i": i}).decode()])
        ids.append(row.fetchone()[0])  # type: ignore[index]
    claim, complete = connections(db.url)

    def one(i: int) -> None:
        assert claim.execute(FLOOR_CLAIM, [ids[i]]).fetchone() is not None
        assert complete.execute(FLOOR_COMPLETE, [OUTPUT, ids[i]]).rowcount == 1

    return one


def compiled(statement: Any, engine: Any) -> tuple[str, dict[str, Any]]:
    """A lifecycle statement's text for PostgreSQL and its parameters' defaults."""
    made = statement._for(engine)
    return made.sql, dict(made.defaults)


#: What the variant being measured opened, closed before its database is dropped.
_open: list[psycopg.Connection[Any] | Engine] = []


def connections(url: str) -> tuple[psycopg.Connection[Any], psycopg.Connection[Any]]:
    """The floor's (claim, complete) connections, closed with the variant's database."""
    claim, complete = open_connections(url)
    _open.extend((claim, complete))
    return claim, complete


VARIANTS = [
    Variant("runpack", runpack_path),
    Variant("same SQL, psycopg", plain_path()),
    Variant(
        "same SQL, psycopg, no secondary indexes",
        plain_path(*(f"DROP INDEX {name}" for name in SECONDARY_INDEXES)),
    ),
    Variant(
        "same SQL, psycopg, no count triggers", plain_path("ALTER TABLE jobs DISABLE TRIGGER USER")
    ),
    Variant("floor table", floor_path),
]


@contextlib.contextmanager
def database(admin_url: str) -> Iterator[Database]:
    with (
        fresh_database(admin_url) as url,
        psycopg.connect(libpq_url(url), autocommit=True) as admin,
    ):
        try:
            yield Database(admin, libpq_url(url), url)
        finally:
            while _open:
                opened = _open.pop()
                if isinstance(opened, Engine):
                    opened.dispose()
                else:
                    opened.close()


def measure(variant: Variant, admin_url: str, n: int) -> Figures:
    with database(admin_url) as db:
        one = variant.prepare(db, n)
        warm = min(100, n // 10)
        for i in range(warm):
            one(i)
        name = db.admin.info.dbname
        before = cpu_sample(server_pids(name))
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(warm, n):
            one(i)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        server = cpu_usage(before, cpu_sample(server_pids(name))).get("postgres", 0.0)
    done = n - warm
    return Figures(1e6 * wall / done, 1e6 * cpu / done, 1e6 * server / done)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per variant (default 2000)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args(argv)
    figures: dict[str, list[Figures]] = {variant.name: [] for variant in VARIANTS}
    for rep in range(1, args.reps + 1):
        for variant in VARIANTS:
            found = measure(variant, args.pg_url, args.jobs)
            figures[variant.name].append(found)
            print(
                f"rep {rep} {variant.name}: {found.wall_us:.0f} us wall, {found.cpu_us:.0f} us"
                f" CPU here, {found.server_us:.0f} us CPU in PostgreSQL per job",
                flush=True,
            )
    rows = [["claim + complete, per job", "wall (us)", "CPU here (us)", "PostgreSQL CPU (us)"]]
    for name, found in figures.items():
        rows.append(
            [
                name,
                spread([f.wall_us for f in found]),
                spread([f.cpu_us for f in found]),
                spread([f.server_us for f in found]),
            ]
        )
    print()
    print_table(rows)
    base = statistics.median(f.cpu_us for f in figures["runpack"])
    plain = statistics.median(f.cpu_us for f in figures["same SQL, psycopg"])
    print(f"Runpack's store path: {base - plain:.0f} us of CPU a job over the same SQL on psycopg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
