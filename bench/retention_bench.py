"""How long retention's statements take on PostgreSQL with a large backlog of finished rows.

Loads ``--rows`` finished jobs (completed, failed and expired, all finished long ago),
``--live`` pending and running jobs that must stay, and ``--runners`` stale runners into a
private database it creates on the server (and drops afterwards), then runs retention
rounds as beat does until nothing is left to delete. Prints each round's statements, the
slowest statement (the figure that must stay under a second: no statement holds its locks
longer) and the totals.

    python bench/retention_bench.py [--database-url postgresql://postgres@127.0.0.1:5432/test]
        [--rows 200000] [--live 20000] [--runners 2000]
"""

from __future__ import annotations

import argparse
import os
import time
import uuid

import sqlalchemy as sa

from runpack_tasks.jobstore.db import create_db_engine, normalize_url
from runpack_tasks.jobstore.schema import upgrade
from runpack_tasks.retention import apply_retention
from runpack_tasks.settings import get_settings

DAY_MS = 24 * 3600 * 1000


class NoCounts:
    """The benchmark counts nothing outside its own database."""

    def add(self, family: str, amounts: dict[str, int]) -> None:
        """Nothing."""

    def read(self, family: str) -> dict[str, int]:
        """Nothing."""
        return {}


def load(engine: sa.Engine, rows: int, live: int, runners: int) -> None:
    """Finished jobs 30 days old, live jobs and stale runners, in a few bulk statements."""
    old = int(time.time() * 1000) - 30 * DAY_MS
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO jobs (id, job_hash, job_type, input_params, status, created_at,"
                " updated_at, claimed_by, finished_at, output_data, attempts)"
                " SELECT md5('f' || n), md5('hf' || n), 'bench', '{\"n\": 1}',"
                " (ARRAY['completed','failed','expired'])[n % 3 + 1], :old + n, :old + n,"
                " 'gone', :old + n, '{\"result\": \"x\"}', 1"
                " FROM generate_series(1, :rows) AS n"
            ),
            {"old": old, "rows": rows},
        )
        conn.execute(
            sa.text(
                "INSERT INTO jobs (id, job_hash, job_type, input_params, status, created_at,"
                " updated_at, claimed_by, last_heartbeat, attempts)"
                " SELECT md5('l' || n), md5('hl' || n), 'bench', '{}',"
                " (ARRAY['pending','in_progress'])[n % 2 + 1], :old + n, :old + n,"
                " CASE WHEN n % 2 = 1 THEN 'r' || (n % :runners) END, :old + n, 0"
                " FROM generate_series(1, :live) AS n"
            ),
            {"old": old, "live": live, "runners": runners},
        )
        conn.execute(
            sa.text(
                "INSERT INTO runners (id, name, kind, capabilities, registered_at, last_seen)"
                " SELECT 'r' || n, 'bench', 'http', '[]', :old, :old"
                " FROM generate_series(0, :runners - 1) AS n"
            ),
            {"old": old, "runners": runners},
        )
        conn.execute(sa.text("ANALYZE jobs"))
        conn.execute(sa.text("ANALYZE runners"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "RUNPACK_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--live", type=int, default=20_000)
    parser.add_argument("--runners", type=int, default=2_000)
    args = parser.parse_args()

    name = f"runpack_bench_retention_{uuid.uuid4().hex[:8]}"
    admin = create_db_engine(args.database_url, pool_size=1)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = normalize_url(args.database_url).set(database=name).render_as_string(False)
    try:
        upgrade(url)
        engine = create_db_engine(url)
        started = time.monotonic()
        load(engine, args.rows, args.live, args.runners)
        print(
            f"loaded {args.rows} finished jobs, {args.live} live jobs and {args.runners} "
            f"runners in {time.monotonic() - started:.1f} s"
        )
        settings = get_settings(
            database_url=url, retain_completed_s=60, retain_failed_s=60, retain_runners_s=60
        )
        total, statements, slowest, rounds, spent = 0, 0, 0.0, 0, 0.0
        while True:
            report = apply_retention(settings, engine, NoCounts())
            rounds += 1
            total += report.total
            statements += report.statements
            slowest = max(slowest, report.slowest_s)
            spent += report.total_s
            print(
                f"round {rounds}: {report.statements} statements, deleted {report.deleted}, "
                f"slowest statement {report.slowest_s * 1000:.0f} ms, "
                f"round {report.total_s:.2f} s"
            )
            if report.total == 0:
                break
        with engine.connect() as conn:
            left = conn.execute(sa.text("SELECT status, count(*) FROM jobs GROUP BY status"))
            remaining = dict(left.all())
            runners_left = conn.execute(sa.text("SELECT count(*) FROM runners")).scalar_one()
        print(
            f"total: deleted {total} rows in {statements} statements over {rounds} rounds, "
            f"{spent:.1f} s; slowest statement {slowest * 1000:.0f} ms (target < 1000 ms)"
        )
        print(f"left: jobs {remaining}, runners {runners_left} (those holding a claim)")
        engine.dispose()
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
