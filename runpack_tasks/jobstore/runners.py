"""The runners table: registering runners and Celery workers, and keeping last_seen fresh."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.engine import Row

from runpack_tasks.jobstore.models import RUNNERS, RunnerKind, now_ms


def register(
    engine: Engine,
    name: str,
    capabilities: list[str],
    kind: RunnerKind = RunnerKind.HTTP,
    runner_id: str | None = None,
) -> str:
    """Record a runner (or refresh one registering again under ``runner_id``); return its id."""
    now = now_ms()
    new_id = runner_id or str(uuid.uuid4())
    with engine.begin() as conn:
        updated = conn.execute(
            sa.update(RUNNERS)
            .where(RUNNERS.c.id == new_id)
            .values(name=name, capabilities=capabilities, kind=kind.value, last_seen=now)
        ).rowcount
        if not updated:
            conn.execute(
                sa.insert(RUNNERS).values(
                    id=new_id,
                    name=name,
                    capabilities=capabilities,
                    kind=kind.value,
                    registered_at=now,
                    last_seen=now,
                )
            )
    return new_id


#: last_seen is written at most this often per runner: every runner request reads it,
#: and a write per request cost more than the request's own work.
TOUCH_INTERVAL_MS = 5_000


def touch(engine: Engine, runner_id: str) -> Row[Any] | None:
    """The runner, marked seen now (if not within the last few seconds); ``None`` if unknown."""
    with engine.connect() as conn:
        runner = conn.execute(sa.select(RUNNERS).where(RUNNERS.c.id == runner_id)).first()
    now = now_ms()
    if runner is None or now - runner.last_seen < TOUCH_INTERVAL_MS:
        return runner
    with engine.begin() as conn:
        return conn.execute(
            sa.update(RUNNERS)
            .where(RUNNERS.c.id == runner_id)
            .values(last_seen=now)
            .returning(*RUNNERS.c)
        ).first()


def retire(engine: Engine, runner_id: str, active_s: float) -> None:
    """Mark a runner that is shutting down as no longer active."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(RUNNERS)
            .where(RUNNERS.c.id == runner_id)
            .values(last_seen=now_ms() - int(active_s * 1000) - 1)
        )
