"""Beat's maintenance round on the real store and broker: what it publishes, and when."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Engine

from runpack_tasks.celery_app import make_celery
from runpack_tasks.jobstore import lifecycle, runners
from runpack_tasks.jobstore.models import JOBS, RunnerKind
from runpack_tasks.maintenance import maintain, queue_depth
from runpack_tasks.publisher import Publisher
from runpack_tasks.settings import get_settings
from tests.support import unique_params


def test_a_job_reaped_is_published_in_the_same_round(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    # Given a Celery worker serving type t, and a job of t whose claimer stopped beating
    settings = get_settings(
        database_url=database_url,
        broker_url=f"filesystem://{tmp_path / 'broker'}",
        redis_url=None,
        heartbeat_timeout_s=5,
    )
    app = make_celery(settings)
    publisher = Publisher(app, engine, settings.runner_active_s)
    runners.register(engine, "worker", ["t"], RunnerKind.CELERY, runner_id="w@host")
    job = lifecycle.submit(engine, "t", unique_params()).job
    lifecycle.claim(engine, job.id, "w@host")
    with engine.begin() as conn:
        conn.execute(
            sa.update(JOBS)
            .where(JOBS.c.id == job.id)
            .values(last_heartbeat=JOBS.c.last_heartbeat - 10_000)
        )

    # When one maintenance round runs
    report = maintain(settings, engine, app, publisher)

    # Then it requeued the job and sent its message in that round, not a grace period later
    assert report.requeued == [job.id]
    assert report.published == [job.id]
    assert queue_depth(app, "t") == 1
    with engine.connect() as conn:
        row = conn.execute(sa.select(JOBS).where(JOBS.c.id == job.id)).one()
    assert row.status == "pending" and row.published_at is not None
    # And the next round sends no second message for it
    assert maintain(settings, engine, app, publisher).published == []
    assert queue_depth(app, "t") == 1
