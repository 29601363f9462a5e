"""The runners table: registering runners and Celery workers, keeping last_seen fresh, and
marking them stopped.

A runner is active while it is not stopped and was seen within the active threshold
(``RUNPACK_RUNNER_ACTIVE_S``); ``last_seen`` is always when it was last heard from.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.engine import Row

from runpack_tasks.jobstore.models import ACTIVE_STATUSES, JOBS, RUNNERS, RunnerKind, now_ms


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
            .values(
                name=name,
                capabilities=capabilities,
                kind=kind.value,
                last_seen=now,
                stopped_at=None,
            )
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


def touch(engine: Engine, runner_id: str, heard_ms: int | None = None) -> Row[Any] | None:
    """The runner, marked seen now (if not within the last few seconds, or if it had
    stopped: a stopped runner that speaks again is running again); ``None`` if unknown.

    ``heard_ms``, when given, is when its request arrived: a stop recorded at or after it
    stands, since a request sent before the stop and handled after it (a long poll its
    runner gave up on when told to stop) does not make the runner active again.

    On PostgreSQL the read and the write share one transaction (a long-polling runner's
    request costs the database one); a SQLite read transaction is ended first, since one
    that turns into a write fails at once, unqueued, when another write came between."""
    with engine.connect() as conn:
        select = sa.select(RUNNERS).where(RUNNERS.c.id == runner_id)
        runner = conn.execute(select).first()
        now = now_ms()
        heard = now + 1 if heard_ms is None else heard_ms  # None: any stop is before it
        if runner is None:
            return None
        if runner.stopped_at is None and now - runner.last_seen < TOUCH_INTERVAL_MS:
            return runner
        if runner.stopped_at is not None and runner.stopped_at >= heard:
            return runner
        if conn.dialect.name == "sqlite":
            conn.rollback()
        touched = conn.execute(
            sa.update(RUNNERS)
            .where(
                RUNNERS.c.id == runner_id,
                sa.or_(RUNNERS.c.stopped_at.is_(None), RUNNERS.c.stopped_at < heard),
            )
            .values(last_seen=now, stopped_at=None)
            .returning(*RUNNERS.c)
        ).first()
        if touched is None:  # deleted, or stopped, since the read
            touched = conn.execute(select).first()
        conn.commit()
        return touched


def mark_seen(engine: Engine, seen_ms: dict[str, int]) -> set[str]:
    """Record that each runner of ``seen_ms`` was heard from at its time, in one transaction:
    ``last_seen`` moves forward to it, and a stop recorded before it is cleared (a stop
    recorded since stands). Returns the ids that still exist."""
    if not seen_ms:
        return set()
    seen = sa.bindparam("seen", type_=sa.BigInteger)
    statement = (
        sa.update(RUNNERS)
        .where(RUNNERS.c.id == sa.bindparam("runner_id"))
        .values(
            last_seen=sa.case((RUNNERS.c.last_seen < seen, seen), else_=RUNNERS.c.last_seen),
            stopped_at=sa.case((RUNNERS.c.stopped_at < seen, None), else_=RUNNERS.c.stopped_at),
        )
    )
    with engine.begin() as conn:
        conn.execute(statement, [{"runner_id": i, "seen": t} for i, t in sorted(seen_ms.items())])
        found = conn.execute(sa.select(RUNNERS.c.id).where(RUNNERS.c.id.in_(seen_ms))).scalars()
        return set(found)


def stop(engine: Engine, runner_id: str) -> bool:
    """Mark a runner that is shutting down as stopped (seen now); False if unknown."""
    now = now_ms()
    with engine.begin() as conn:
        updated = conn.execute(
            sa.update(RUNNERS)
            .where(RUNNERS.c.id == runner_id)
            .values(last_seen=now, stopped_at=now)
        ).rowcount
    return bool(updated)


def active_since(cutoff_ms: int) -> sa.ColumnElement[bool]:
    """The condition of a runner being active: not stopped, and seen since ``cutoff_ms``."""
    return sa.and_(RUNNERS.c.stopped_at.is_(None), RUNNERS.c.last_seen >= cutoff_ms)


def is_active(runner: Row[Any], cutoff_ms: int) -> bool:
    """``active_since`` for a runner row already read."""
    return runner.stopped_at is None and bool(runner.last_seen >= cutoff_ms)


def stale_statement(cutoff_ms: int, limit: int) -> Any:
    """``DELETE FROM runners WHERE id IN (SELECT id ... LIMIT limit)``: runners last seen
    before ``cutoff_ms`` that hold no claimed or running job (ix_runners_last_seen, and
    ix_jobs_claimed_by_updated for the claims)."""
    claims = sa.exists().where(
        JOBS.c.claimed_by == RUNNERS.c.id,
        JOBS.c.status.in_([status.value for status in ACTIVE_STATUSES]),
    )
    stale = RUNNERS.c.last_seen < cutoff_ms
    ids = sa.select(RUNNERS.c.id).where(stale, ~claims).limit(limit)
    # staleness is checked again on the row deleted: a runner heard from since is kept
    return sa.delete(RUNNERS).where(RUNNERS.c.id.in_(ids), stale)


def delete_stale(engine: Engine, cutoff_ms: int, limit: int) -> int:
    """Retention (SPEC §8): delete up to ``limit`` runners unseen since ``cutoff_ms`` that
    hold no active claim; returns how many."""
    with engine.begin() as conn:
        return int(conn.execute(stale_statement(cutoff_ms, limit)).rowcount)
