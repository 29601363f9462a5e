"""Retention (SPEC §8) on the real store: finished jobs and stale runners deleted in batches,
pending and running jobs never; PostgreSQL reads the rows to delete through the index."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from runpack_tasks.celery_app import make_celery
from runpack_tasks.jobstore import counting, lifecycle, runners
from runpack_tasks.jobstore.models import JOB_COUNTS, JOBS, RUNNERS, JobStatus, now_ms
from runpack_tasks.maintenance import maintain
from runpack_tasks.publisher import Publisher
from runpack_tasks.retention import apply_retention, deleted_totals
from runpack_tasks.settings import RunpackSettings, get_settings
from runpack_tasks.shared_counts import FileCounts
from tests.support import (
    ApiServer,
    Backend,
    register,
    running_cluster,
    unique_params,
    wait_for,
)


def _settings(database_url: str, tmp_path: Path, retain_s: float | None = 2) -> RunpackSettings:
    return get_settings(
        database_url=database_url,
        broker_url=f"filesystem://{tmp_path / 'broker'}",
        redis_url=None,
        retain_completed_s=retain_s,
        retain_failed_s=retain_s,
        retain_runners_s=retain_s,
    )


def _jobs_in_every_state(engine: Engine) -> dict[str, str]:
    """One job per state, by state; the finished ones finished now."""
    ids: dict[str, str] = {}
    for state in ("pending", "claimed", "in_progress", "completed", "failed", "expired"):
        job = lifecycle.submit(engine, "t", unique_params()).job
        ids[state] = job.id
        if state == "pending":
            continue
        lifecycle.claim(engine, job.id, "busy-runner")
        if state == "in_progress":
            lifecycle.heartbeat(
                engine,
                job.id,
                "busy-runner",
                progress_current=1,
                progress_total=2,
                console_output=None,
            )
        elif state in ("completed", "expired"):
            lifecycle.complete(engine, job.id, "busy-runner", output_data={}, console_output=None)
            if state == "expired":
                lifecycle.expire(engine, job.id)
        elif state == "failed":
            lifecycle.fail(engine, job.id, "busy-runner", error_message="x", console_output=None)
    return ids


def _states(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {row.id: row.status for row in conn.execute(sa.select(JOBS.c.id, JOBS.c.status))}


def _runner_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(RUNNERS.c.id)).scalars())


def test_finished_jobs_and_stale_runners_go_within_a_few_rounds(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    # Given jobs in every state, a stale runner holding a running job, and an idle one,
    # with every retention at 2 s
    settings = _settings(database_url, tmp_path)
    ids = _jobs_in_every_state(engine)
    runners.register(engine, "busy", ["t"], runner_id="busy-runner")
    idle = runners.register(engine, "idle", ["t"])
    publisher = Publisher(make_celery(settings), engine, settings.runner_active_s)
    counts = FileCounts(tmp_path / "counts")

    # When beat's maintenance rounds run (every 0.2 s here) for a while
    first = maintain(settings, engine, publisher._app, publisher)
    assert first.retention.total == 0  # nothing is old enough yet
    # (and the first round folded the job counts: one row per type and state)
    with engine.connect() as conn:
        count_rows = conn.execute(sa.select(sa.func.count()).select_from(JOB_COUNTS)).scalar()
    assert count_rows == len(counting.counts_by_type(engine)) == 6

    def finished_gone() -> bool:
        apply_retention(settings, engine, counts)
        finished = {ids["completed"], ids["failed"], ids["expired"]}
        return not (finished & set(_states(engine))) and idle not in _runner_ids(engine)

    started = time.monotonic()
    wait_for(finished_gone, timeout_s=10, interval_s=0.2, what="old rows to go")

    # Then the finished jobs went after their 2 s, no sooner
    assert time.monotonic() - started >= 1.5
    # And the pending and running jobs are untouched
    states = _states(engine)
    assert states == {
        ids["pending"]: "pending",
        ids["claimed"]: "claimed",
        ids["in_progress"]: "in_progress",
    }
    # And the idle runner is gone, the one holding a claim is kept
    assert _runner_ids(engine) == {"busy-runner"}
    assert idle not in _runner_ids(engine)
    # And every deletion was counted by kind
    assert deleted_totals(counts) == {"completed": 1, "failed": 1, "expired": 1, "runners": 1}


def test_rows_go_in_batches_and_a_round_stops_at_its_cap(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    # Given 7 old completed jobs, one without finished_at (aged by its updated_at)
    settings = _settings(database_url, tmp_path, retain_s=60)
    old = now_ms() - 120_000
    ids = []
    for _ in range(7):
        job = lifecycle.submit(engine, "t", unique_params()).job
        lifecycle.claim(engine, job.id, "r")
        lifecycle.complete(engine, job.id, "r", output_data={}, console_output=None)
        ids.append(job.id)
    with engine.begin() as conn:
        conn.execute(sa.update(JOBS).values(finished_at=old, updated_at=old))
        conn.execute(sa.update(JOBS).where(JOBS.c.id == ids[0]).values(finished_at=None))
    recent = lifecycle.submit(engine, "t", unique_params()).job
    lifecycle.claim(engine, recent.id, "r")
    lifecycle.complete(engine, recent.id, "r", output_data={}, console_output=None)

    # When a round may run 2 statements of 2 rows
    capped = apply_retention(settings, engine, batch=2, max_statements=2)

    # Then it deleted 4 and stopped; the next round deletes the rest, the recent one stays
    assert capped.deleted == {"completed": 4} and capped.statements == 2
    rest = apply_retention(settings, engine, batch=2)
    assert rest.deleted == {"completed": 3}
    assert set(_states(engine)) == {recent.id}


def test_unset_retention_keeps_everything(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    settings = _settings(database_url, tmp_path, retain_s=0)
    ids = _jobs_in_every_state(engine)
    with engine.begin() as conn:
        conn.execute(sa.update(JOBS).values(finished_at=1, updated_at=1))
    report = apply_retention(settings, engine)
    assert report.statements == 0 and set(_states(engine)) == set(ids.values())


def test_retention_refuses_to_delete_unfinished_states() -> None:
    for status in (JobStatus.PENDING, JobStatus.CLAIMED, JobStatus.IN_PROGRESS):
        with pytest.raises(ValueError, match="never deletes"):
            lifecycle.retention_statement(status, now_ms())


def test_the_defaults_keep_completed_results_and_a_week_of_the_rest() -> None:
    settings = RunpackSettings()
    assert settings.retain_completed_s is None
    assert settings.retain_failed_s == settings.retain_runners_s == 7 * 24 * 3600


def _plan(engine: Engine, statement: sa.Delete) -> str:
    sql = statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"EXPLAIN {sql}")).scalars().all()
    return "\n".join(rows)


def test_the_deletes_read_through_the_indexes_on_postgresql(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("EXPLAIN plans are PostgreSQL's")
    # Given 20,000 jobs, half of them finished long ago, and 5,000 runners
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO jobs (id, job_hash, job_type, input_params, status, created_at,"
                " updated_at, finished_at, attempts)"
                " SELECT 'j' || n, md5(n::text), 't', '{}',"
                " (ARRAY['pending','completed','failed','expired','in_progress'])[n % 5 + 1],"
                " n, n, CASE WHEN n % 5 IN (1, 2, 3) THEN n END, 0"
                " FROM generate_series(1, 20000) AS n"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO runners (id, name, kind, capabilities, registered_at, last_seen)"
                " SELECT 'r' || n, 'r', 'http', '[]', n, n FROM generate_series(1, 5000) AS n"
            )
        )
        conn.execute(sa.text("ANALYZE jobs"))
        conn.execute(sa.text("ANALYZE runners"))

    # When PostgreSQL plans each retention statement
    for status in lifecycle.FINISHED_STATUSES:
        for unfinished in (False, True):
            plan = _plan(
                engine, lifecycle.retention_statement(status, 10_000, unfinished=unfinished)
            )
            # Then the rows are found through (status, finished_at), never a scan of jobs
            assert "ix_jobs_status_finished" in plan, plan
            assert "Seq Scan on jobs" not in plan, plan
    plan = _plan(engine, runners.stale_statement(250, 1_000))
    assert "ix_runners_last_seen" in plan, plan
    assert "Seq Scan on runners" not in plan, plan
    assert "Seq Scan on jobs" not in plan, plan


def test_a_real_beat_deletes_what_retention_allows_and_counts_it(
    backend: Backend, database_url: str, tmp_path: Path, plugin_dir: Path
) -> None:
    # Given runpack api and runpack beat with every retention at 2 s
    # (and claims not reaped meanwhile)
    env = {f"RUNPACK_RETAIN_{kind}_S": "2" for kind in ("COMPLETED", "FAILED", "RUNNERS")}
    env["RUNPACK_HEARTBEAT_TIMEOUT_S"] = "120"
    with running_cluster(
        backend, database_url, tmp_path, plugin_dir, extra_env=env, workers=0
    ) as cluster:
        server = cluster.server
        before = retention_counts(server)
        # And a completed job, a job claimed by a runner that went quiet, and a pending one
        job_type = f"r{uuid.uuid4().hex[:8]}"
        finished, claimed, pending = (
            cluster.submit(job_type, unique_params()).json()["job_id"] for _ in range(3)
        )
        done_by = register(server, [job_type], name="done")
        holder = register(server, [job_type], name="holder")
        with server.client("runner", done_by) as runner:
            runner.post(f"/api/runner/jobs/{finished}/claim")
            runner.post(f"/api/runner/jobs/{finished}/complete", json={"output_data": {}})
        with server.client("runner", holder) as runner:
            runner.post(f"/api/runner/jobs/{claimed}/claim")

        # When beat's rounds (every second) run past the 2 s
        def gone(path: str) -> bool:
            with server.client("admin") as admin:
                return admin.get(path).status_code == 404

        wait_for(lambda: gone(f"/api/admin/jobs/{finished}"), timeout_s=20, what="deletion")
        wait_for(lambda: gone(f"/api/admin/runners/{done_by}"), timeout_s=10, what="deletion")

        # Then the pending and claimed jobs, and the runner holding the claim, are kept
        assert cluster.job(pending)["status"] == "pending"
        assert cluster.job(claimed)["status"] == "claimed"
        assert not gone(f"/api/admin/runners/{holder}")
        # And /metrics counts what beat deleted
        after = retention_counts(server)
        assert after["completed"] - before.get("completed", 0) >= 1
        assert after["runners"] - before.get("runners", 0) >= 1


def retention_counts(server: ApiServer) -> dict[str, float]:
    """``runpack_retention_deleted_total`` by kind, as the API serves it."""
    with server.client() as prometheus:
        text = prometheus.get("/metrics").text
    return {
        sample.labels["kind"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "runpack_retention_deleted_total"
    }
