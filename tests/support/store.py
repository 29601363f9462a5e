"""Looking at the database behind a server: stored jobs, and proof that nothing changed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from runpack_tasks.jobstore.models import JOBS, RUNNERS


def stored_job(engine: Engine, job_id: str) -> dict[str, Any]:
    """Every column of one job."""
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(JOBS).where(JOBS.c.id == job_id)).one()._mapping)


def database_state(engine: Engine, *, with_last_seen: bool = False) -> dict[str, Any]:
    """Row counts and every stored row; a runner's last_seen only when asked.

    Runner routes refresh last_seen before they look at the body, so it may move on a
    refused report; nothing else may.
    """
    runner_columns = [c for c in RUNNERS.c if with_last_seen or c.name != "last_seen"]
    with engine.connect() as conn:
        counts = {
            table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (JOBS, RUNNERS)
        }
        jobs = [dict(row._mapping) for row in conn.execute(sa.select(JOBS).order_by(JOBS.c.id))]
        runners = [
            dict(row._mapping)
            for row in conn.execute(sa.select(*runner_columns).order_by(RUNNERS.c.id))
        ]
    return {"counts": counts, "jobs": jobs, "runners": runners}


@contextmanager
def nothing_changes(engine: Engine, *, with_last_seen: bool = False) -> Iterator[None]:
    """Assert the database holds the same rows after the block as before it."""
    before = database_state(engine, with_last_seen=with_last_seen)
    yield
    after = database_state(engine, with_last_seen=with_last_seen)
    assert after["counts"] == before["counts"]
    assert after == before
