"""A runner's presence in the store: a stopped runner (HTTP or Celery) is inactive at once,
its last_seen stays the last time it was heard from, and it is active again when it speaks."""

from __future__ import annotations

from sqlalchemy import Engine

from runpack_api.presenters import runner_listed
from runpack_tasks.jobstore import queries, runners
from runpack_tasks.jobstore.models import RunnerKind, now_ms

ACTIVE_S = 300.0


def test_a_stopped_celery_worker_is_inactive_and_never_seen_before_its_start(
    engine: Engine,
) -> None:
    # Given a Celery worker that just started
    worker = runners.register(engine, "w1@host", ["hello_world"], RunnerKind.CELERY, "w1@host")
    assert queries.job_types_served(engine, ACTIVE_S).celery == {"hello_world"}
    # When it stops a moment later
    assert runners.stop(engine, worker)
    # Then it is inactive everywhere activity is counted
    row = queries.runner_by_id(engine, worker)
    assert row is not None
    cutoff = now_ms() - int(ACTIVE_S * 1000)
    assert not runner_listed(row, cutoff, None).is_active
    assert queries.runner_counts(engine, ACTIVE_S) == (1, 0)
    assert queries.job_types_served(engine, ACTIVE_S).any == set()
    assert queries.job_types_served(engine, ACTIVE_S).celery == set()
    # And its last_seen is when it stopped, never before it started
    assert row.registered_at <= row.last_seen == row.stopped_at


def test_a_stopped_runner_that_speaks_again_is_active_again(engine: Engine) -> None:
    runner = runners.register(engine, "laptop", ["by_hand"])
    runners.stop(engine, runner)
    # When it makes a request again (within the interval last_seen is not rewritten)
    touched = runners.touch(engine, runner)
    # Then it is running again
    assert touched is not None and touched.stopped_at is None
    assert queries.runner_counts(engine, ACTIVE_S) == (1, 1)
    # And registering again also clears the stop
    runners.stop(engine, runner)
    runners.register(engine, "laptop", ["by_hand"], runner_id=runner)
    assert queries.job_types_served(engine, ACTIVE_S).any == {"by_hand"}


def test_a_request_that_arrived_before_the_stop_does_not_undo_it(engine: Engine) -> None:
    """A runner told to stop gives up its long poll; the server may handle that request
    after the stop, and it must not show the runner as running again."""
    runner = runners.register(engine, "laptop", ["by_hand"])
    heard_before = now_ms() - 1
    runners.stop(engine, runner)
    # When a request heard before the stop is handled after it
    touched = runners.touch(engine, runner, heard_before)
    # Then the runner stays stopped
    assert touched is not None and touched.stopped_at is not None
    assert queries.runner_counts(engine, ACTIVE_S) == (1, 0)
    # And a request heard after the stop makes it active again
    stopped_at = touched.stopped_at
    touched = runners.touch(engine, runner, stopped_at + 1)
    assert touched is not None and touched.stopped_at is None
    assert queries.runner_counts(engine, ACTIVE_S) == (1, 1)


def test_stopping_an_unknown_runner_changes_nothing(engine: Engine) -> None:
    assert not runners.stop(engine, "nobody")
    assert queries.runner_counts(engine, ACTIVE_S) == (0, 0)
