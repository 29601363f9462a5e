"""Precompiled statements: dialects, JSON, errors, and the plans PostgreSQL picks for them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from runpack_tasks.jobstore import queries
from runpack_tasks.jobstore.db import SQLITE_WAL_CHECKPOINT_PAGES, create_db_engine
from runpack_tasks.jobstore.hashing import job_hash
from runpack_tasks.jobstore.lifecycle import Submission, claim, complete, submit, submit_many
from runpack_tasks.jobstore.models import JOBS
from runpack_tasks.jobstore.schema import upgrade
from runpack_tasks.jobstore.statements import Statement, insert_rows
from tests.support import IN_CI, postgres_backend, unique_params, wait_for

BY_TYPE = Statement(
    lambda _dialect: (
        sa.select(JOBS.c.id, JOBS.c.input_params)
        .where(JOBS.c.job_type == sa.bindparam("job_type", None))
        .order_by(JOBS.c.created_at)
    )
)


def test_json_goes_in_and_comes_back_as_values(engine: Engine) -> None:
    params = {"nested": {"list": [1, 2.5, "x", None, True]}, "text": "é ☃"}
    job = submit(engine, "json", params).job
    assert job.input_params == params
    rows = BY_TYPE.run(engine, {"job_type": "json"})
    assert rows == [(job.id, params)]
    claim(engine, job.id, "r")
    done = complete(engine, job.id, "r", output_data={"out": [params]}, console_output=None)
    assert done is not None and done.output_data == {"out": [params]}


def test_insert_rows_returns_the_keys_of_the_rows_it_created(engine: Engine) -> None:
    # Given a job that exists
    existing = submit(engine, "keys", {"n": 0}).job
    columns = (
        "id",
        "job_hash",
        "job_type",
        "input_params",
        "status",
        "created_at",
        "updated_at",
        "attempts",
    )
    rows = [
        (f"keys-{n}", f"hash-{n}", "keys", {"n": n, "s": 'a "b" \\ é'}, "pending", n, n, 0)
        for n in range(3)
    ] + [("keys-x", existing.job_hash, "keys", {}, "pending", 0, 0, 0)]
    # When rows are inserted beside one with its hash
    created = insert_rows(engine, JOBS, columns, rows, conflict="job_hash")
    # Then the keys of the new rows come back, and the rows hold what was sent
    assert sorted(created) == ["hash-0", "hash-1", "hash-2"]
    found = BY_TYPE.run(engine, {"job_type": "keys"})
    assert sorted(found) == sorted(
        [(existing.id, {"n": 0}), *((f"keys-{n}", {"n": n, "s": 'a "b" \\ é'}) for n in range(3))]
    )


def test_a_multi_row_insert_stores_every_value_as_given(engine: Engine) -> None:
    # Given jobs whose text and parameters need quoting or escaping in any encoding
    awkward = ['quote " and \\ backslash', "comma, {brace} 'apostrophe'", "é ☃ 𝄞", "NULL", ""]
    params = [
        {"text": text, "n": index, "big": 2**53 - 1, "float": 0.1, "list": [None, text, {}]}
        for index, text in enumerate(awkward)
    ]
    job_types = [f"type {text}"[:128] for text in awkward]
    submissions = [
        Submission(job_type, given, job_hash(job_type, given), publishing=index % 2 == 0)
        for index, (job_type, given) in enumerate(zip(job_types, params, strict=True))
    ]
    # When they are submitted in one write
    outcomes = submit_many(engine, submissions)
    # Then each row holds exactly its own values, as returned and as read back
    for outcome, submission in zip(outcomes, submissions, strict=True):
        assert outcome.created
        for job in (outcome.job, queries.job_by_id(engine, outcome.job.id)):
            assert job is not None
            assert (job.job_type, job.input_params, job.job_hash) == (
                submission.job_type,
                submission.input_params,
                submission.digest,
            )
            assert (job.published_at is not None) == submission.publishing
            assert job.status == "pending" and job.attempts == 0 and job.claimed_by is None


def test_a_failing_statement_raises_and_leaves_the_pool_usable(engine: Engine) -> None:
    broken = Statement(lambda _dialect: sa.text("SELECT * FROM no_such_table"))
    with pytest.raises(Exception, match="no_such_table"):
        broken.run(engine, {})
    job = submit(engine, "after-error", unique_params()).job
    assert BY_TYPE.run(engine, {"job_type": "after-error"}) == [(job.id, job.input_params)]


def test_each_transition_commits_on_its_own(engine: Engine) -> None:
    job = submit(engine, "commit", unique_params()).job
    claim(engine, job.id, "r")
    # a new connection, outside any transaction of ours, sees the claim
    fresh = sa.create_engine(engine.url)
    try:
        with fresh.connect() as conn:
            status = conn.execute(sa.select(JOBS.c.status).where(JOBS.c.id == job.id)).scalar()
        assert status == "claimed"
    finally:
        fresh.dispose()


def test_sqlite_connections_write_ahead_and_checkpoint_every_few_thousand_pages(
    tmp_path: Path,
) -> None:
    sqlite = create_db_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    try:
        with sqlite.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        assert pages == SQLITE_WAL_CHECKPOINT_PAGES > 1000
    finally:
        sqlite.dispose()


def test_sqlite_inserts_send_no_returning_and_read_back_only_a_partly_new_batch(
    tmp_path: Path,
) -> None:
    """Python's sqlite3 lets go of the GIL at each returned row, and beside a busy event
    loop each step waited for it again; a batch's insert returns nothing to step through."""
    url = f"sqlite:///{tmp_path / 'steps.db'}"
    upgrade(url)
    sqlite = create_db_engine(url)
    sent: list[str] = []
    sa.event.listen(
        sqlite, "connect", lambda connection, _: connection.set_trace_callback(sent.append)
    )
    try:
        new = [unique_params() for _ in range(50)]
        batch = [Submission("steps", p, job_hash("steps", p), False) for p in new]
        # When a batch of new jobs is inserted
        outcomes = submit_many(sqlite, batch)
        # (the trace repeats a statement for each trigger program it runs)
        inserts = {sql for sql in sent if sql.startswith("INSERT INTO jobs")}
        # Then every job is created by one INSERT that returns no rows, and nothing reads
        assert all(o.created for o in outcomes) and len(inserts) == 1
        assert "RETURNING" not in inserts.pop() and not any("SELECT" in sql for sql in sent)
        sent.clear()
        # When half of the next batch exists already
        more = [unique_params() for _ in range(50)]
        mixed = batch[::2] + [Submission("steps", p, job_hash("steps", p), False) for p in more]
        first_ids = {o.job.job_hash: o.job.id for o in outcomes}
        again = submit_many(sqlite, mixed)
        # Then one statement reads which rows are new, and the answers say which were made
        assert len({sql for sql in sent if "json_group_array" in sql}) == 1
        created = [o.job.input_params for o in again if o.created]
        assert created == more
        assert [o.job.id for o in again if not o.created] == [
            first_ids[s.digest] for s in batch[::2]
        ]
    finally:
        sqlite.dispose()


@pytest.fixture
def pg_engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine on a fresh PostgreSQL database (the planner question is PostgreSQL's)."""
    backend = postgres_backend()
    if backend is None:
        if IN_CI:
            pytest.fail("RUNPACK_TEST_DATABASE_URL is not set; CI must test PostgreSQL")
        pytest.skip("RUNPACK_TEST_DATABASE_URL is not set")
    with backend.fresh_database(tmp_path) as url:
        engine = create_db_engine(url)
        yield engine
        engine.dispose()


def test_postgresql_finds_jobs_by_primary_key_only(pg_engine: Engine) -> None:
    """Once psycopg prepares a transition, PostgreSQL plans it for any runner id and
    status; that generic plan took the (claimed_by, ...) index for completions and the
    (status, ...) one for claims, reading every row the runner had claimed (1.2 million
    index entries for 1 500 jobs). Only the primary key may serve a transition."""
    jobs = 300
    for _ in range(jobs):
        job = submit(pg_engine, "plan", unique_params()).job
        claim(pg_engine, job.id, "worker")
        complete(pg_engine, job.id, "worker", output_data={}, console_output=None)
    url = pg_engine.url
    pg_engine.dispose()  # a backend reports its statistics as it exits

    def index_reads() -> dict[str, tuple[int, int]]:
        observer = sa.create_engine(url)
        try:
            with observer.connect() as conn:
                rows = conn.execute(
                    sa.text(
                        "SELECT indexrelname, idx_scan, idx_tup_read FROM pg_stat_user_indexes"
                        " WHERE relname = 'jobs'"
                    )
                ).all()
        finally:
            observer.dispose()
        return {name: (scans, reads) for name, scans, reads in rows}

    reads = wait_for(
        lambda: (found := index_reads())["jobs_pkey"][0] >= 2 * jobs and found,
        what="the claim and completion lookups in the index statistics",
    )
    others = {name: read for name, (_, read) in reads.items() if name.startswith("ix_jobs")}
    assert sum(others.values()) == 0, others
