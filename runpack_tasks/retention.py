"""Retention (SPEC §8), run by beat at each maintenance round: delete finished jobs and
stale runners older than their ``RUNPACK_RETAIN_*_S``, at most 1,000 rows per statement.

Small statements keep each one's locks short; a round stops after ``MAX_STATEMENTS`` or
``ROUND_BUDGET_S`` and the next round goes on, so a large backlog never holds beat long.
Pending and running jobs are never deleted (``lifecycle.delete_finished`` refuses them).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from runpack_tasks.jobstore import lifecycle, runners
from runpack_tasks.jobstore.lifecycle import RETENTION_BATCH
from runpack_tasks.jobstore.models import JobStatus, now_ms
from runpack_tasks.settings import RunpackSettings
from runpack_tasks.shared_counts import SharedCounts, shared_counts

log = logging.getLogger(__name__)

#: The shared counts family ``/metrics`` shows as ``runpack_retention_deleted_total``.
DELETED_FAMILY = "retention_deleted"
#: Its ``kind`` labels: the three finished job states, and runners.
KINDS = ("completed", "failed", "expired", "runners")
#: Statements one round runs at most (1,000 rows each).
MAX_STATEMENTS = 200
#: A round starts no new statement after this many seconds.
ROUND_BUDGET_S = 5.0


@dataclass
class RetentionReport:
    """What one round deleted, by kind, and how long its statements took."""

    deleted: dict[str, int] = field(default_factory=dict)
    statements: int = 0
    slowest_s: float = 0.0
    total_s: float = 0.0

    @property
    def total(self) -> int:
        """Rows deleted in all."""
        return sum(self.deleted.values())


def _steps(
    settings: RunpackSettings, engine: Engine, now: int
) -> list[tuple[str, Callable[[int], int]]]:
    """(kind, delete up to n rows) for each kind whose retention is set, in order."""
    steps: list[tuple[str, Callable[[int], int]]] = []
    retained = {
        JobStatus.COMPLETED: settings.retain_completed_s,
        JobStatus.FAILED: settings.retain_failed_s,
        JobStatus.EXPIRED: settings.retain_failed_s,
    }
    for status, retain_s in retained.items():
        if retain_s:
            cutoff = now - int(retain_s * 1000)
            for unfinished in (False, True):
                steps.append(
                    (
                        status.value,
                        functools.partial(
                            lifecycle.delete_finished,
                            engine,
                            status,
                            cutoff,
                            unfinished=unfinished,
                        ),
                    )
                )
    if settings.retain_runners_s:
        cutoff = now - int(settings.retain_runners_s * 1000)
        steps.append(("runners", functools.partial(runners.delete_stale, engine, cutoff)))
    return steps


def apply_retention(
    settings: RunpackSettings,
    engine: Engine,
    counts: SharedCounts | None = None,
    *,
    batch: int = RETENTION_BATCH,
    max_statements: int = MAX_STATEMENTS,
    budget_s: float = ROUND_BUDGET_S,
) -> RetentionReport:
    """One round: for each kind, delete batches of ``batch`` rows until one comes back
    short, the round ran ``max_statements`` or ``budget_s`` is spent. What was deleted is
    added to ``counts`` (by default the settings' shared counts)."""
    report = RetentionReport()
    started = time.monotonic()
    for kind, delete in _steps(settings, engine, now_ms()):
        while report.statements < max_statements and time.monotonic() - started < budget_s:
            before = time.monotonic()
            deleted = delete(batch)
            took_s = time.monotonic() - before
            report.statements += 1
            report.slowest_s = max(report.slowest_s, took_s)
            if deleted:
                report.deleted[kind] = report.deleted.get(kind, 0) + deleted
            if deleted < batch:
                break
    report.total_s = time.monotonic() - started
    if report.deleted:
        log.info(
            "retention: deleted %s in %d statements (slowest %.3f s)",
            ", ".join(f"{n} {kind}" for kind, n in report.deleted.items()),
            report.statements,
            report.slowest_s,
        )
        _count(counts or shared_counts(settings), report.deleted)
    return report


def _count(counts: SharedCounts | None, deleted: dict[str, int]) -> None:
    if counts is None:
        return
    try:
        counts.add(DELETED_FAMILY, deleted)
    except Exception:  # the counts' store away: the rows are gone anyway
        log.warning("could not count what retention deleted", exc_info=True)


def deleted_totals(counts: SharedCounts) -> dict[str, int]:
    """What retention deleted so far, by kind (every kind, 0 when none)."""
    stored = counts.read(DELETED_FAMILY)
    return {kind: stored.get(kind, 0) for kind in KINDS}
