"""The state machine of SPEC §2 on the real store (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import ast
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from runpack_api.errors import runpack_error_response
from runpack_tasks.errors import SubmitContended
from runpack_tasks.jobstore import lifecycle, queries, statements
from runpack_tasks.jobstore.db import create_db_engine
from runpack_tasks.jobstore.hashing import job_hash
from runpack_tasks.jobstore.lifecycle import claim, complete, fail, heartbeat, reap, release, submit
from runpack_tasks.jobstore.models import JOBS, JobRow, JobStatus, now_ms
from tests.support import unique_params, wait_for

PACKAGES = [
    Path(__file__).parents[2] / name for name in ("runpack_api", "runpack_tasks", "runner_plugins")
]


def _age_heartbeat(engine: Engine, job_id: str, by_ms: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.update(JOBS)
            .where(JOBS.c.id == job_id)
            .values(last_heartbeat=JOBS.c.last_heartbeat - by_ms)
        )


def test_submit_creates_once_then_returns_the_same_job(engine: Engine) -> None:
    params = unique_params()
    first = submit(engine, "t", params)
    second = submit(engine, "t", dict(reversed(list(params.items()))))
    assert (first.created, second.created) == (True, False)
    assert second.job.id == first.job.id and second.needs_publish is False
    assert first.job.status == JobStatus.PENDING.value and first.job.attempts == 0


def test_claim_counts_attempts_and_only_one_claimer_wins(engine: Engine) -> None:
    job = submit(engine, "t", unique_params()).job
    won = claim(engine, job.id, "r1")
    assert won is not None and won.attempts == 1 and won.status == "claimed"
    assert claim(engine, job.id, "r2") is None


def test_a_claim_commits_without_waiting_for_the_disk_and_completion_still_waits(
    engine: Engine,
) -> None:
    # Given an engine used one statement at a time: the claim and what follows share its
    # one connection's session
    single = create_db_engine(engine.url.render_as_string(False), pool_size=1)
    job = submit(single, "t", unique_params()).job
    try:
        # When a job is claimed on it
        assert claim(single, job.id, "r1") is not None
        with single.connect() as conn:
            if single.dialect.name != "postgresql":
                # Then (SQLite) the claim is a plain update
                assert "set_config" not in lifecycle._CLAIM._for(single).sql
                return
            # Then the claim turned synchronous commit off for its own transaction only
            session_setting = conn.exec_driver_sql("SHOW synchronous_commit").scalar()
            conn.execute(sa.select(sa.literal(1)).where(lifecycle._async_commit()))
            in_transaction = conn.exec_driver_sql("SHOW synchronous_commit").scalar()
            conn.rollback()
        assert (session_setting, in_transaction) == ("on", "off")
        # and a completion on the same session commits durably, as before
        assert complete(single, job.id, "r1", output_data={}, console_output=None) is not None
        with single.connect() as conn:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    finally:
        single.dispose()


def test_only_the_claimer_reports(engine: Engine) -> None:
    job = submit(engine, "t", unique_params()).job
    claim(engine, job.id, "r1")
    assert (
        heartbeat(engine, job.id, "r2", progress_current=1, progress_total=2, console_output="x")
        is None
    )
    assert complete(engine, job.id, "r2", output_data={}, console_output=None) is None
    assert fail(engine, job.id, "r2", error_message="x", console_output=None) is None
    assert release(engine, job.id, "r2") is None
    beat = heartbeat(
        engine, job.id, "r1", progress_current=1, progress_total=2, console_output="log"
    )
    assert beat is not None and beat.status == "in_progress" and beat.progress_current == 1
    done = complete(engine, job.id, "r1", output_data={"v": 1}, console_output=None)
    assert done is not None and done.status == "completed" and done.output_data == {"v": 1}
    assert done.console_output == "log"  # kept when the final report sends none
    assert (
        heartbeat(engine, job.id, "r1", progress_current=2, progress_total=2, console_output=None)
        is None
    )


def _published_at(engine: Engine, job_id: str) -> int | None:
    with engine.connect() as conn:
        value = conn.execute(sa.select(JOBS.c.published_at).where(JOBS.c.id == job_id)).scalar()
    return None if value is None else int(value)


def test_a_sent_message_is_recorded_and_only_the_failed_sender_s_own_mark_is_cleared(
    engine: Engine,
) -> None:
    # Given a job whose message a worker consumed, claimed and completed before the
    # publisher recorded the send
    job = submit(engine, "t", unique_params()).job
    claim(engine, job.id, "r1")
    complete(engine, job.id, "r1", output_data={}, console_output=None)
    # When the publisher records it, then the job says its message went out
    lifecycle.mark_published(engine, [job.id])
    assert _published_at(engine, job.id) is not None
    # And a send recorded as failed clears only pending jobs' marks
    lifecycle.mark_published(engine, [job.id], published=False)
    assert _published_at(engine, job.id) is not None
    pending = submit(engine, "t", unique_params()).job
    lifecycle.mark_published(engine, [pending.id])
    lifecycle.mark_published(engine, [pending.id], published=False)
    assert _published_at(engine, pending.id) is None
    # And a failed send that began before beat's successful one leaves beat's mark
    began = now_ms() - 1_000
    lifecycle.mark_published(engine, [pending.id])
    lifecycle.mark_published(engine, [pending.id], published=False, marked_by=began)
    assert _published_at(engine, pending.id) is not None
    lifecycle.mark_published(engine, [pending.id], published=False, marked_by=now_ms() + 1)
    assert _published_at(engine, pending.id) is None


def test_release_gives_back_the_attempt(engine: Engine) -> None:
    job = submit(engine, "t", unique_params()).job
    claim(engine, job.id, "r1")
    released = release(engine, job.id, "r1")
    assert released is not None and released.status == "pending" and released.attempts == 0
    assert released.claimed_by is None


def test_reap_requeues_while_attempts_remain_then_fails(engine: Engine) -> None:
    job = submit(engine, "t", unique_params()).job
    for attempt in (1, 2):
        claim(engine, job.id, f"r{attempt}")
        _age_heartbeat(engine, job.id, 10_000)
        outcome = reap(engine, heartbeat_timeout_s=5, max_attempts=2)
        if attempt == 1:
            assert outcome.requeued == [job.id] and outcome.failed == []
        else:
            assert outcome.failed == [job.id] and outcome.requeued == []
    with engine.connect() as conn:
        row = conn.execute(sa.select(JOBS).where(JOBS.c.id == job.id)).one()
    assert row.status == "failed" and row.attempts == 2
    assert row.error_message == "timed out: no heartbeat for 5 s"


def test_reap_leaves_fresh_claims_alone(engine: Engine) -> None:
    job = submit(engine, "t", unique_params()).job
    claim(engine, job.id, "r1")
    assert reap(engine, heartbeat_timeout_s=60, max_attempts=1).failed == []
    _age_heartbeat(engine, job.id, 61_000)
    assert reap(engine, heartbeat_timeout_s=60, max_attempts=1).failed == [job.id]


def test_resubmitting_a_failed_job_requeues_it_with_fresh_attempts(engine: Engine) -> None:
    params = unique_params()
    job = submit(engine, "t", params).job
    claim(engine, job.id, "r1")
    fail(engine, job.id, "r1", error_message="boom", console_output="trace")
    again = submit(engine, "t", params)
    assert again.requeued and again.needs_publish and again.job.id == job.id
    assert again.job.status == "pending" and again.job.attempts == 0
    assert again.job.error_message is None and again.job.console_output is None
    assert submit(engine, "t", params).requeued is False  # the second caller does not publish


def test_expired_results_are_recomputed(engine: Engine) -> None:
    params = unique_params()
    job = submit(engine, "t", params).job
    claim(engine, job.id, "r1")
    complete(engine, job.id, "r1", output_data={"v": 1}, console_output=None)
    assert lifecycle.expire(engine, job.id) is not None
    assert lifecycle.expire(engine, job.id) is None  # only completed jobs expire
    assert submit(engine, "t", params).requeued


def _completed(engine: Engine, job_type: str = "t", cache_version: str | None = None) -> JobRow:
    job = submit(engine, job_type, unique_params()).job
    claim(engine, job.id, "r1")
    done = complete(
        engine, job.id, "r1", output_data={"v": 1}, console_output=None, cache_version=cache_version
    )
    assert done is not None
    return done


def test_completion_records_the_cache_version_and_a_requeue_clears_it(engine: Engine) -> None:
    done = _completed(engine, cache_version="3")
    assert done.cache_version == "3"
    assert lifecycle.expire(engine, done.id) is not None
    again = submit(engine, "t", done.input_params)
    assert again.requeued and again.requeued_from == "expired"
    assert again.job.cache_version is None and again.job.finished_at is None


def test_expiring_a_judged_result_never_expires_the_next_one(engine: Engine) -> None:
    # Given a result judged invalid by a slow reader, expired and recomputed meanwhile
    judged = _completed(engine)
    lifecycle.expire(engine, judged.id)
    submit(engine, "t", judged.input_params)
    claim(engine, judged.id, "r2")
    # (a result is told apart by when it finished, to the millisecond)
    wait_for(lambda: now_ms() > (judged.finished_at or 0), what="the next millisecond")
    complete(engine, judged.id, "r2", output_data={"v": 2}, console_output=None)
    # When the slow reader expires the result it judged, Then the new one stays
    assert lifecycle.expire(engine, judged.id, finished_at=judged.finished_at) is None
    assert queries.job_by_id(engine, judged.id).status == "completed"  # type: ignore[union-attr]


def test_expire_matching_expires_completed_jobs_by_filter_in_batches(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lifecycle, "EXPIRE_BATCH", 2)
    job_type = f"t{uuid.uuid4().hex[:8]}"
    old = [_completed(engine, job_type, cache_version="1") for _ in range(5)]
    new = _completed(engine, job_type, cache_version="2")
    pending = submit(engine, job_type, unique_params()).job
    with pytest.raises(ValueError, match="at least one filter"):
        lifecycle.expire_matching(engine)
    assert lifecycle.expire_matching(engine, job_type=job_type, cache_version="1") == 5
    assert lifecycle.expire_matching(engine, job_type=job_type, cache_version="1") == 0
    assert lifecycle.expire_matching(engine, finished_before=new.finished_at) == 0  # none left
    assert lifecycle.expire_matching(engine, finished_before=new.finished_at + 1) == 1
    statuses = {queries.job_by_id(engine, job.id).status for job in old}  # type: ignore[union-attr]
    assert statuses == {"expired"}
    assert queries.job_by_id(engine, pending.id).status == "pending"  # type: ignore[union-attr]


def test_cancel_fails_pending_and_running_jobs_and_refuses_the_claimers_reports(
    engine: Engine,
) -> None:
    # Given a pending job, and one claimed and reporting
    pending = submit(engine, "t", unique_params()).job
    running = submit(engine, "t", unique_params()).job
    claim(engine, running.id, "r1")
    heartbeat(engine, running.id, "r1", progress_current=1, progress_total=2, console_output="x")

    # When both are cancelled
    cancelled = [lifecycle.cancel(engine, job.id) for job in (pending, running)]

    # Then both failed with "cancelled" and a finish time; the claimer is kept on the row
    for job in cancelled:
        assert job is not None and job.status == "failed"
        assert job.error_message == lifecycle.CANCELLED_MESSAGE and job.finished_at is not None
    assert cancelled[1] is not None and cancelled[1].claimed_by == "r1"
    # And the claimer's late reports are refused: the job stays failed "cancelled"
    assert complete(engine, running.id, "r1", output_data={"v": 1}, console_output=None) is None
    assert fail(engine, running.id, "r1", error_message="late", console_output=None) is None
    assert release(engine, running.id, "r1") is None
    late = queries.job_by_id(engine, running.id)
    assert late is not None and (late.status, late.error_message) == ("failed", "cancelled")
    # And a finished job cannot be cancelled
    assert lifecycle.cancel(engine, running.id) is None
    assert lifecycle.cancel(engine, "no-such-job") is None
    # And a resubmit requeues a cancelled job like any failed one
    again = lifecycle.resubmit(engine, pending.id)
    assert again is not None and again.status == "pending" and again.error_message is None


def test_a_row_deleted_before_it_is_read_is_inserted_again(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = unique_params()
    old = submit(engine, "t", params).job
    real_jobs_by_hashes = queries.jobs_by_hashes
    reads: list[dict[str, JobRow]] = []

    def deleted_first(engine: Engine, digests: list[str]) -> dict[str, JobRow]:
        if not reads:  # an admin deletes the job between the insert and this read
            assert lifecycle.delete(engine, [old.id]) == {old.id}
        reads.append(real_jobs_by_hashes(engine, digests))
        return reads[-1]

    monkeypatch.setattr(queries, "jobs_by_hashes", deleted_first)
    outcome = submit(engine, "t", params)
    assert reads == [{}]  # read once, found nothing, then inserted again
    assert outcome.created and outcome.needs_publish and outcome.job.id != old.id
    assert outcome.job.status == JobStatus.PENDING.value and outcome.job.input_params == params
    assert queries.job_by_hash(engine, old.job_hash) == outcome.job


def submissions(count: int, job_type: str = "many") -> list[lifecycle.Submission]:
    made = []
    for _ in range(count):
        params = unique_params()
        made.append(lifecycle.Submission(job_type, params, job_hash(job_type, params)))
    return made


def test_submit_many_answers_each_submission_in_order(engine: Engine) -> None:
    # Given a pending, a completed and a failed job
    pending, completed, failed = submissions(3)
    ids = [submit(engine, s.job_type, s.input_params).job.id for s in (pending, completed, failed)]
    for job_id in ids[1:]:
        assert claim(engine, job_id, "r") is not None
    complete(engine, ids[1], "r", output_data={"v": 1}, console_output=None)
    fail(engine, ids[2], "r", error_message="x", console_output=None)
    new = submissions(2)
    # When they are submitted at once with new ones, one of them twice
    batch = [new[0], pending, completed, failed, new[1], new[0], failed]
    outcomes = lifecycle.submit_many(engine, batch)
    # Then each is what a submit right after the ones before it would have returned
    assert [(o.created, o.requeued) for o in outcomes] == [
        (True, False),
        (False, False),
        (False, False),
        (False, True),
        (True, False),
        (False, False),
        (False, False),
    ]
    assert [o.job.id for o in outcomes[1:4]] == ids
    assert outcomes[5].job.id == outcomes[0].job.id and outcomes[6].job.id == ids[2]
    assert [o.job.status for o in outcomes] == [
        "pending", "pending", "completed", "pending", "pending", "pending", "pending"
    ]  # fmt: skip
    assert outcomes[2].job.output_data == {"v": 1}


def test_submit_many_splits_statements_at_the_parameter_limit(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a SQLite database that takes 7 rows per statement (PostgreSQL takes any number)
    monkeypatch.setattr(statements, "_max_params", lambda _engine: 7 * 9)
    batch = submissions(50)
    existing = submit(engine, batch[20].job_type, batch[20].input_params).job
    # When 50 jobs are submitted, one of them already there
    outcomes = lifecycle.submit_many(engine, batch)
    # Then every other one is created, each under its own hash, in order
    assert [o.created for o in outcomes] == [n != 20 for n in range(50)]
    assert [o.job.job_hash for o in outcomes] == [s.digest for s in batch]
    assert outcomes[20].job == existing
    assert [o.job.input_params for o in outcomes] == [s.input_params for s in batch]


def test_a_created_job_is_answered_as_the_table_holds_it(engine: Engine) -> None:
    # Given parameters whose JSON is awkward to carry (quotes, escapes, unicode, floats,
    # large integers, nesting)
    odd = [
        {"q": 'say "hi"\\n', "u": "é ☃ 𝄞", "f": [0.1, 1e-7, -2.5e300, 3.0], "n": 2**53 - 1},
        {"nested": {"a": [{"b": None, "c": True}]}, "empty": {}, "list": []},
        unique_params(),
    ]
    batch = [lifecycle.Submission("odd", p, job_hash("odd", p), n == 0) for n, p in enumerate(odd)]
    # When they are created
    outcomes = lifecycle.submit_many(engine, batch)
    # Then each answer is the very row a read of the table returns, field for field
    assert all(o.created for o in outcomes)
    for outcome in outcomes:
        assert outcome.job == queries.job_by_id(engine, outcome.job.id)
    assert outcomes[0].job.published_at is not None and outcomes[1].job.published_at is None


def test_new_job_ids_are_uuids_that_sort_by_creation_time(engine: Engine) -> None:
    # Given jobs created one at a time and in a batch
    jobs = [submit(engine, "ids", unique_params()).job]
    jobs += [o.job for o in lifecycle.submit_many(engine, submissions(200, "ids"))]
    jobs.append(submit(engine, "ids", unique_params()).job)
    # Then each id is a distinct version-7 UUID in canonical text ...
    parsed = [uuid.UUID(job.id) for job in jobs]
    assert [str(u) for u in parsed] == [job.id for job in jobs]
    assert {u.version for u in parsed} == {7} and {u.variant for u in parsed} == {uuid.RFC_4122}
    assert len(set(parsed)) == len(jobs)
    # ... that starts with its creation time, so ids sort as the jobs were created
    assert [int(u.hex[:12], 16) for u in parsed] == [job.created_at for job in jobs]


def test_overlapping_concurrent_batches_create_each_job_once(engine: Engine) -> None:
    shared, own_a, own_b = submissions(100), submissions(100), submissions(100)
    start = Barrier(2)

    def one_batch(batch: list[lifecycle.Submission]) -> list[lifecycle.SubmitOutcome]:
        start.wait()
        return lifecycle.submit_many(engine, batch)

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(one_batch, [own_a + shared, shared[::-1] + own_b])
    created = [o.job.job_hash for o in a + b if o.created]
    assert sorted(created) == sorted(s.digest for s in shared + own_a + own_b)
    assert {o.job.id for o in a[100:]} == {o.job.id for o in b[:100]}
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(JOBS)).scalar_one() == 300


def test_a_row_that_never_reads_back_is_a_503_after_a_few_inserts(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = unique_params()
    existing = submit(engine, "t", params).job
    reads: list[str] = []

    def never_found(_engine: Engine, digests: list[str]) -> dict[str, JobRow]:
        reads.extend(digests)
        return {}

    monkeypatch.setattr(queries, "jobs_by_hashes", never_found)
    with pytest.raises(SubmitContended) as raised:
        submit(engine, "t", params)
    assert reads == [existing.job_hash] * lifecycle.SUBMIT_ATTEMPTS
    response = runpack_error_response(raised.value)
    assert response.status_code == 503
    assert orjson.loads(bytes(response.body)) == {"error": raised.value.message}


WRITING_CALLS = {
    "values",
    "update",
    "insert",
    "_update_one",
    "ordered_values",
    "on_conflict_do_update",
}
#: Raw SQL that writes a status: ``SET ... status =`` before any WHERE, or an INSERT naming it.
RAW_STATUS_WRITE = re.compile(
    r"\bSET\b(?:(?!\bWHERE\b)[^;])*?\bstatus\s*=|\bINSERT\s+INTO\s+\w+\s*\([^)]*\bstatus\b",
    re.IGNORECASE,
)


def _names_status(node: ast.AST) -> bool:
    """Whether a column key is ``"status"`` or ``<table>.c.status``."""
    if isinstance(node, ast.Constant):
        return node.value == "status"
    return isinstance(node, ast.Attribute) and node.attr == "status"


def _sets_status(value: ast.AST) -> bool:
    """Whether an argument of a writing call maps status to a value: ``{"status": ...}``,
    ``dict(status=...)``, ``[(JOBS.c.status, ...)]``, or a list of those."""
    if isinstance(value, ast.Dict):
        return any(key is not None and _names_status(key) for key in value.keys)
    if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "dict":
        return any(kw.arg == "status" for kw in value.keywords)
    if isinstance(value, ast.Tuple) and value.elts and _names_status(value.elts[0]):
        return True
    if isinstance(value, ast.List | ast.Tuple):
        return any(_sets_status(item) for item in value.elts)
    return False


def _call_writes_status(node: ast.Call) -> bool:
    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
    if name not in WRITING_CALLS:
        return False
    if any(kw.arg == "status" for kw in node.keywords):
        return True
    arguments = [*node.args, *(kw.value for kw in node.keywords)]
    return any(_sets_status(argument) for argument in arguments)


def _assigns_status(tree: ast.AST) -> list[int]:
    """Lines that write a status: ``.values(status=...)``, ``.values({"status": ...})``,
    ``.values(**{...})``, ``.status = ...``, and raw SQL (``SET status = ...``) in strings."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_writes_status(node):
            lines.append(node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if RAW_STATUS_WRITE.search(node.value):
                lines.append(node.lineno)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            lines += [
                t.lineno for t in targets if isinstance(t, ast.Attribute) and t.attr == "status"
            ]
    return lines


STATUS_WRITES = [
    "sa.update(JOBS).values(status='failed')",
    "sa.update(JOBS).values({'status': 'failed'})",
    "sa.update(JOBS).values({JOBS.c.status: 'failed'})",
    "sa.update(JOBS).values(**{'status': 'failed'})",
    "sa.update(JOBS).values(dict(status='failed'))",
    "sa.insert(JOBS).values([{'id': 'a'}, {'status': 'failed'}])",
    "sa.update(JOBS).ordered_values((JOBS.c.status, 'failed'))",
    "insert(JOBS).on_conflict_do_update(index_elements=['id'], set_={'status': 'x'})",
    "job.status = 'failed'",
    "conn.execute(sa.text(\"UPDATE jobs SET status = 'failed' WHERE id = :id\"))",
    "conn.execute(text('update jobs set updated_at = 1, status=:s where id = :id'))",
    "conn.exec_driver_sql(f'UPDATE jobs SET status = {value!r}')",
    "sa.text('INSERT INTO jobs (id, status) VALUES (:id, :status)')",
]
STATUS_READS = [
    "sa.select(JOBS).where(JOBS.c.status == 'failed')",
    "sa.update(JOBS).where(JOBS.c.status == 'pending').values(published_at=None)",
    "sa.text(\"UPDATE jobs SET published_at = NULL WHERE status = 'pending'\")",
    "sa.text(\"SELECT id FROM jobs WHERE status = 'failed'\")",
    "status = job.status",
]


@pytest.mark.parametrize("source", STATUS_WRITES)
def test_the_status_guard_flags_each_way_of_writing_status(source: str) -> None:
    assert _assigns_status(ast.parse(source)) == [1]


@pytest.mark.parametrize("source", STATUS_READS)
def test_the_status_guard_lets_reads_through(source: str) -> None:
    assert _assigns_status(ast.parse(source)) == []


def test_no_module_but_lifecycle_writes_status() -> None:
    lifecycle_path = Path(lifecycle.__file__).resolve()
    offenders = []
    for package in PACKAGES:
        for path in package.rglob("*.py"):
            if path.resolve() == lifecycle_path or "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text())
            offenders += [f"{path.name}:{line}" for line in _assigns_status(tree)]
    assert offenders == []


def test_grouped_claims_have_one_winner_each_and_grouped_completions_are_the_claimers(
    engine: Engine,
) -> None:
    # Given three pending jobs, the third already claimed by another runner
    ids = [submit(engine, "noop", unique_params()).job.id for _ in range(3)]
    assert claim(engine, ids[2], "other") is not None

    # When one statement claims them, the first listed twice
    got = lifecycle.claim_many(engine, [ids[0], ids[1], ids[0], ids[2]], "w")

    # Then each pending job has one winner, and a taken job none
    assert [job.id if job else None for job in got] == [ids[0], ids[1], None, None]
    assert {(job.status, job.claimed_by, job.attempts) for job in got if job} == {
        ("claimed", "w", 1)
    }

    # When one statement completes them, each with its own result
    done = lifecycle.complete_many(
        engine,
        "w",
        [
            lifecycle.Completion(ids[0], {"a": "é"}, "log", "v2"),
            lifecycle.Completion(ids[1], {"b": [1, 2.5]}, None),
            lifecycle.Completion(ids[0], {"again": 1}, "twice"),
            lifecycle.Completion(ids[2], {"not": "mine"}, None),
        ],
    )

    # Then the claimer's jobs are completed with their own results, once, and the other
    # runner's job is left alone
    assert done == [True, True, False, False]
    first, second, other = (queries.job_by_id(engine, job_id) for job_id in ids)
    assert first and second and other
    assert (first.status, first.output_data, first.console_output, first.cache_version) == (
        "completed",
        {"a": "é"},
        "log",
        "v2",
    )
    assert (second.status, second.output_data, second.cache_version) == (
        "completed",
        {"b": [1, 2.5]},
        None,
    )
    assert (other.status, other.claimed_by, other.output_data) == ("claimed", "other", None)
    # And a late report of a finished job is refused
    late = [lifecycle.Completion(job_id, {"late": True}, None) for job_id in ids[:2]]
    assert lifecycle.complete_many(engine, "w", late) == [False, False]
    assert (queries.job_by_id(engine, ids[0]) or first).output_data == {"a": "é"}
