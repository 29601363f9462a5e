"""Every hot statement on the jobs table has an index to use, on PostgreSQL.

The statements are captured as the job store really sends them, then EXPLAINed with
sequential scans priced out (``enable_seqscan = off``): a plan that still scans the whole
jobs table has no index to use, whatever the table's size. Left out on purpose: the
counts per type and state and the duration histogram, which read every row by nature and
are read at most every RUNPACK_COUNTS_CACHE_S / few seconds per API process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, event

from runpack_tasks.jobstore import lifecycle, queries, runners, statements
from runpack_tasks.jobstore.models import JobStatus, now_ms
from tests.support import Backend, unique_params

Captured = list[tuple[str, Any]]


@pytest.fixture
def captured(
    backend: Backend, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Captured]:
    """What reaches the driver: through SQLAlchemy, and the compiled hot ``Statement``s."""
    if backend.base_database_url is None:
        pytest.skip("EXPLAIN plans are checked on PostgreSQL")
    found: Captured = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if " jobs" in statement:
            found.append((statement, parameters))

    def execute(engine: Engine, sql: str, args: Any) -> list[tuple[Any, ...]]:
        capture(None, None, sql, args)
        return sent(engine, sql, args)

    sent = statements._execute
    monkeypatch.setattr(statements, "_execute", execute)
    event.listen(engine, "before_cursor_execute", capture)
    yield found
    event.remove(engine, "before_cursor_execute", capture)


def run_hot_paths(engine: Engine) -> None:
    """What submits, runners, Celery workers, beat and the admin views do."""
    runner = runners.register(engine, "explained", ["hot"])
    runners.touch(engine, runner)
    digest_job = lifecycle.submit(engine, "hot", unique_params()).job
    lifecycle.submit(engine, "hot", digest_job.input_params)  # the existing job's answer
    queries.job_by_hash(engine, digest_job.job_hash)
    queries.job_by_id(engine, digest_job.id)
    queries.available_jobs(engine, ["hot", "other"])
    queries.pending_types(engine, ["hot", "other"])
    lifecycle.claim(engine, digest_job.id, runner)
    lifecycle.heartbeat(
        engine, digest_job.id, runner, progress_current=1, progress_total=2, console_output="x"
    )
    lifecycle.release(engine, digest_job.id, runner)
    lifecycle.claim(engine, digest_job.id, runner)
    lifecycle.complete(engine, digest_job.id, runner, output_data={}, console_output=None)
    grouped = [lifecycle.submit(engine, "hot", unique_params()).job.id for _ in range(2)]
    lifecycle.claim_many(engine, grouped, runner)
    lifecycle.complete_many(engine, runner, [lifecycle.Completion(i, {}, None) for i in grouped])
    failing = lifecycle.submit(engine, "hot", unique_params()).job
    lifecycle.claim(engine, failing.id, runner)
    lifecycle.fail(engine, failing.id, runner, error_message="no", console_output=None)
    lifecycle.resubmit(engine, failing.id)
    lifecycle.mark_published(engine, [failing.id])
    lifecycle.reap(engine, heartbeat_timeout_s=90, max_attempts=3)
    lifecycle.expire(engine, digest_job.id, finished_at=now_ms())
    lifecycle.expire(engine, digest_job.id)
    lifecycle.expire_matching(engine, job_type="hot", finished_before=now_ms())
    for status in (None, JobStatus.PENDING):
        for job_type in (None, "hot"):
            page = queries.list_jobs(engine, status=status, job_type=job_type, count=False)
            queries.list_jobs(
                engine, status=status, job_type=job_type, before=(now_ms(), "z"), count=False
            )
    assert page.rows
    queries.job_with_runner_name(engine, failing.id)
    queries.recent_jobs_of_runner(engine, runner)
    queries.running_jobs_by_runner(engine, [runner])
    queries.completed_per_minute(engine, now_ms() - 3_600_000)
    queries.heartbeat_lag(engine)
    lifecycle.delete(engine, [failing.id])


def test_no_hot_statement_scans_the_whole_jobs_table(engine: Engine, captured: Captured) -> None:
    run_hot_paths(engine)
    assert len(captured) > 20
    scanning = []
    with engine.connect() as conn:
        conn.execute(sa.text("SET enable_seqscan = off"))
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        for statement, parameters in captured:
            cursor.execute(f"EXPLAIN {statement}", parameters)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            if "Seq Scan on jobs" in plan:
                scanning.append(f"{statement}\n{plan}")
        conn.rollback()
    assert not scanning, "\n\n".join(scanning)
