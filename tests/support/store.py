"""Looking at the database behind a server: stored jobs, and proof that nothing changed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from runpack_tasks.jobstore.models import JOBS, RUNNERS, now_ms


def stored_job(engine: Engine, job_id: str) -> dict[str, Any]:
    """Every column of one job."""
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(JOBS).where(JOBS.c.id == job_id)).one()._mapping)


def database_state(engine: Engine) -> dict[str, Any]:
    """Row counts and every stored row, but a runner's last_seen.

    Runner routes note that the runner was heard from before they look at the body, so
    last_seen may move on a refused report; and an API process writes those notes a few
    seconds late, so it may move during any block (see ``nothing_changes``).
    """
    runner_columns = [c for c in RUNNERS.c if c.name != "last_seen"]
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


def latest_seen_ms(engine: Engine) -> int:
    """The latest last_seen of any runner (0 without runners)."""
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(RUNNERS.c.last_seen))).scalar() or 0)


@contextmanager
def nothing_changes(engine: Engine, *, with_last_seen: bool = False) -> Iterator[None]:
    """Assert the database holds the same rows after the block as before it; with
    ``with_last_seen``, that no runner was heard from during the block either (a note of
    an earlier request, written meanwhile, carries that request's earlier time)."""
    before = database_state(engine)
    started_ms = now_ms()
    yield
    after = database_state(engine)
    assert after["counts"] == before["counts"]
    assert after == before
    if with_last_seen:
        assert latest_seen_ms(engine) < started_ms
