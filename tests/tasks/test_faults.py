"""The fault matrix, small: 200 jobs under each of three faults lose none and finish none
twice (the whole matrix, 1,000 jobs under each of nine faults, is ``bench/faults.py``)."""

from __future__ import annotations

from pathlib import Path

from tests.support.faults import QUICK_FAULTS, format_table, run_matrix


def test_a_worker_killed_redis_restarted_and_postgres_restarted_lose_no_job(
    tmp_path: Path,
) -> None:
    # Given the production processes (API x2, worker x2, beat, runner x2) on a private
    # PostgreSQL and Redis
    # When 200 jobs are submitted while a worker is killed mid-job twice, then while Redis
    # restarts empty, then while PostgreSQL restarts
    rows = run_matrix(QUICK_FAULTS, tmp_path, jobs=200, window_s=4, fresh_per_row=False)

    # Then every job completed, none twice
    table = format_table(rows)
    for row in rows:
        assert row.ok, f"{row.fault}: {row.problems}\n{table}"
        assert row.jobs == row.completed == 200, table
