"""The publisher's sending: a batch of job messages goes to the broker whole, or counts as
unsent (so the jobs' marks are cleared and beat sends them again)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from runpack_tasks.celery_app import make_celery
from runpack_tasks.publisher import Publisher
from runpack_tasks.routing import queue_for
from runpack_tasks.settings import RunpackSettings
from runpack_tasks.tasks import EXECUTE_TASK
from tests.support import IN_CI, TEST_REDIS_URL


@pytest.fixture
def publisher() -> Iterator[Publisher]:
    """A publisher on the test Redis (its engine is never used by sending)."""
    if not TEST_REDIS_URL:
        if IN_CI:
            pytest.fail("RUNPACK_TEST_REDIS_URL is not set; CI must test Redis")
        pytest.skip("RUNPACK_TEST_REDIS_URL is not set")
    app = make_celery(RunpackSettings(broker_url=TEST_REDIS_URL, database_url="sqlite://"))
    yield Publisher(app, sa.create_engine("sqlite://"), active_s=10)


def _queued(publisher: Publisher, job_type: str) -> list[dict[str, Any]]:
    """The messages waiting in the type's queue, oldest first, and the queue emptied."""
    with publisher.app.connection_for_write() as connection:
        client = connection.default_channel._create_client()
        name = queue_for(job_type)
        raw = client.lrange(name, 0, -1)
        client.delete(name)
    return [json.loads(item) for item in reversed(raw)]


def _args(message: dict[str, Any]) -> Any:
    """A Celery task message's positional arguments."""
    assert message["properties"]["body_encoding"] == "base64"
    return json.loads(base64.b64decode(message["body"]))[0]


def test_a_batch_of_messages_reaches_the_queue_whole_in_one_round_trip(
    publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_type = f"batch-{uuid.uuid4().hex[:8]}"
    jobs = [(str(uuid.uuid4()), job_type) for _ in range(25)]
    executed: list[int] = []
    with publisher.app.connection_for_write() as connection:
        pipeline_class = type(connection.default_channel._create_client().pipeline())
    real_execute = pipeline_class.execute

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        executed.append(len(self.command_stack))
        return real_execute(self, *args, **kwargs)

    monkeypatch.setattr(pipeline_class, "execute", counted)
    assert publisher._send_all(jobs) == [job_id for job_id, _ in jobs]
    messages = _queued(publisher, job_type)
    assert executed[-1] == 25  # after any declaring of the queue: all 25 in one pipeline
    assert [_args(m) for m in messages] == [[job_id] for job_id, _ in jobs]
    assert {m["headers"]["task"] for m in messages} == {EXECUTE_TASK}


def test_a_batch_the_broker_refused_counts_as_unsent(
    publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_type = f"refused-{uuid.uuid4().hex[:8]}"
    jobs = [(str(uuid.uuid4()), job_type) for _ in range(5)]
    with publisher.app.connection_for_write() as connection:
        pipeline_class = type(connection.default_channel._create_client().pipeline())

    def refused(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("the broker went away")

    monkeypatch.setattr(pipeline_class, "execute", refused)
    assert publisher._send_all(jobs) == []
    monkeypatch.undo()
    assert _queued(publisher, job_type) == []
