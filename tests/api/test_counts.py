"""The job counts an API process shares between stats, the job list and /metrics."""

from __future__ import annotations

from sqlalchemy import Engine

from runpack_api.counts import TableCounts
from runpack_tasks.jobstore import lifecycle
from tests.support import unique_params, wait_for


def test_counts_are_reused_then_read_again_after_their_ttl(engine: Engine) -> None:
    lifecycle.submit(engine, "counted", unique_params())
    counts = TableCounts(engine, ttl_s=0.3)
    assert counts.total("pending", "counted") == 1
    # a second job is not seen while the reading is fresh...
    lifecycle.submit(engine, "counted", unique_params())
    assert counts.total("pending", "counted") == 1
    # ...and is once the reading is older than its ttl (read again in the background)
    wait_for(lambda: counts.total("pending", "counted") == 2, what="a new reading")
    assert counts.total() == 2 and counts.total(job_type="other") == 0


def test_a_ttl_of_zero_counts_on_every_call(engine: Engine) -> None:
    counts = TableCounts(engine, ttl_s=0)
    assert counts.total("pending") == 0
    lifecycle.submit(engine, "counted", unique_params())
    assert counts.total("pending") == 1
