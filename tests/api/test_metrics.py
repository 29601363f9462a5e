"""GET /metrics after a few jobs: every counter moved by what happened, no more."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from runpack_tasks.jobstore.models import JOBS
from runpack_tasks.retention import apply_retention
from tests.support import ApiServer, InProcessServer, register, submit, wait_for


def scrape(server: ApiServer, job_type: str) -> dict[str, float]:
    """Samples for ``job_type``, by sample name (histogram buckets by their bound)."""
    with server.client() as prometheus:
        text = prometheus.get("/metrics").text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("job_type") != job_type:
                continue
            name = sample.name
            if "le" in sample.labels:
                name = f"{name}[{sample.labels['le']}]"
            found[name] = sample.value
    return found


def test_counters_move_by_what_happened(server: ApiServer) -> None:
    job_type = f"m{uuid.uuid4().hex[:10]}"
    runner_id = register(server, [job_type])
    # Given three new jobs; two resubmitted while pending
    ids = [submit(server, job_type, {"n": n}).json()["job_id"] for n in range(3)]
    submit(server, job_type, {"n": 0})
    submit(server, job_type, {"n": 1})
    # And a runner completes two and fails one, then one is still running, one waiting
    with server.client("runner", runner_id) as runner:
        for job_id in ids:
            runner.post(f"/api/runner/jobs/{job_id}/claim")
        for job_id in ids[:2]:
            runner.post(f"/api/runner/jobs/{job_id}/complete", json={"output_data": {}})
        runner.post(f"/api/runner/jobs/{ids[2]}/error", json={"error_message": "x"})
        running = submit(server, job_type, {"n": "running"}).json()["job_id"]
        runner.post(f"/api/runner/jobs/{running}/claim")
    submit(server, job_type, {"n": "waiting"})
    # And the completed ones are submitted again: cache hits
    assert submit(server, job_type, {"n": 0}).json()["status"] == "completed"
    assert submit(server, job_type, {"n": 1}).json()["status"] == "completed"

    # When Prometheus scrapes (the table is read at most every few seconds)
    def settled() -> dict[str, float] | None:
        samples = scrape(server, job_type)
        return samples if samples.get("runpack_jobs_completed_total") == 2 else None

    samples = wait_for(settled, timeout_s=20, interval_s=0.5, what="the metrics to settle")

    # Then each moved by exactly what happened
    assert samples["runpack_submissions_total"] == 3 + 2 + 2 + 2
    assert samples["runpack_cache_hits_total"] == 2
    assert samples["runpack_jobs_completed_total"] == 2
    assert samples["runpack_jobs_failed_total"] == 1
    assert samples["runpack_queue_depth"] == 1
    assert samples["runpack_job_duration_seconds_count"] == 2
    assert samples["runpack_job_duration_seconds_bucket[+Inf]"] == 2
    assert samples["runpack_job_duration_seconds_bucket[300.0]"] == 2
    assert samples["runpack_heartbeat_lag_seconds"] >= 0


def retention_samples(server: ApiServer) -> dict[str, float]:
    """``runpack_retention_deleted_total`` by kind."""
    with server.client() as prometheus:
        text = prometheus.get("/metrics").text
    return {
        sample.labels["kind"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "runpack_retention_deleted"
        for sample in family.samples
        if sample.name == "runpack_retention_deleted_total"
    }


def test_what_beats_retention_deleted_is_counted_by_kind(
    server: InProcessServer, server_engine: Engine
) -> None:
    # Given a completed and a failed job finished long ago, and retention of 60 s
    settings = server.app.state.runtime.settings.model_copy(
        update={"retain_completed_s": 60, "retain_failed_s": 60, "retain_runners_s": None}
    )
    before = retention_samples(server)
    assert set(before) == {"completed", "failed", "expired", "runners"}
    job_type = f"m{uuid.uuid4().hex[:10]}"
    runner_id = register(server, [job_type])
    ids = [submit(server, job_type, {"n": n}).json()["job_id"] for n in range(2)]
    with server.client("runner", runner_id) as runner:
        for job_id in ids:
            runner.post(f"/api/runner/jobs/{job_id}/claim")
        runner.post(f"/api/runner/jobs/{ids[0]}/complete", json={"output_data": {}})
        runner.post(f"/api/runner/jobs/{ids[1]}/error", json={"error_message": "x"})
    with server_engine.begin() as conn:
        conn.execute(sa.update(JOBS).where(JOBS.c.id.in_(ids)).values(finished_at=1))

    # When a retention round runs where beat would (another process: the counts are shared
    # through the broker's store, not this process's memory)
    report = apply_retention(settings, server_engine)

    # Then /metrics counts what it deleted by kind, on top of what was counted before
    assert report.deleted == {"completed": 1, "failed": 1}
    after = retention_samples(server)
    assert after["completed"] - before["completed"] == 1
    assert after["failed"] - before["failed"] == 1
    assert after["expired"] == before["expired"] and after["runners"] == before["runners"]
