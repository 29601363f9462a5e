"""PostgreSQL restarting or down under the job store: statements and transitions carry on."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from runpack_tasks.jobstore.db import create_db_engine, database_unavailable, until_stored
from runpack_tasks.jobstore.lifecycle import claim, complete, submit
from runpack_tasks.jobstore.schema import upgrade
from tests.support import unique_params
from tests.support.private_services import PrivatePostgres, private_postgres


@pytest.fixture(scope="module")
def server() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL, migrated, for this module to restart and stop."""
    with private_postgres() as server:
        upgrade(server.url())
        yield server


def test_after_a_database_restart_statements_run_on_fresh_connections(
    server: PrivatePostgres,
) -> None:
    # Given an engine whose pool holds several connections
    engine = create_db_engine(server.url())
    try:
        job = submit(engine, "t", unique_params()).job
        held = [engine.raw_connection() for _ in range(3)]
        for connection in held:
            connection.close()  # back to the pool, open

        # When the server restarts (pg_ctl restart -m fast ends every session)
        server.restart()

        # Then every transition goes through, none raises
        assert claim(engine, job.id, "r") is not None
        for _ in range(4):
            assert submit(engine, "t", unique_params()).created
        done = complete(engine, job.id, "r", output_data={}, console_output=None)
        assert done is not None and done.status == "completed"
    finally:
        engine.dispose()


def test_a_transition_waits_out_a_database_outage(server: PrivatePostgres) -> None:
    # Given a claimed job, and PostgreSQL stopped
    engine = create_db_engine(server.url())
    try:
        job = submit(engine, "t", unique_params()).job
        claim(engine, job.id, "r")
        server.shut_down()
        back = threading.Timer(1.0, server.start_again)
        back.start()
        try:
            # When its completion is written until stored, while PostgreSQL comes back
            done = until_stored(
                lambda: complete(engine, job.id, "r", output_data={"x": 1}, console_output=None),
                give_up_after_s=30,
                what="completing",
            )
        finally:
            back.join()
        # Then it went through once the server was back
        assert done is not None and done.status == "completed" and done.output_data == {"x": 1}
    finally:
        engine.dispose()


def test_an_outage_longer_than_the_limit_and_other_errors_raise(server: PrivatePostgres) -> None:
    engine = create_db_engine(server.url())
    try:
        # A statement that is wrong is not tried again
        calls = []

        def wrong() -> None:
            calls.append(1)
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT * FROM no_such_table"))

        with pytest.raises(sa.exc.ProgrammingError):
            until_stored(wrong, give_up_after_s=30, what="reading")
        assert len(calls) == 1
        # And an outage outlasting the limit raises once the limit has passed
        server.shut_down()
        try:
            with pytest.raises(Exception) as raised:
                until_stored(lambda: submit(engine, "t", unique_params()), 0.5, "submitting")
            assert database_unavailable(raised.value)
        finally:
            server.start_again()
    finally:
        engine.dispose()
