"""The floor of ``bench/celery_bench.py --floor``: the least a job cache on Celery does per job.

Runpack keeps a job as a durable row, says who runs it, and refuses a late report. The
floor does the same in the fewest statements a hand-written service would send, with none
of Runpack's code:

- ``bench/floor_api.py``: FastAPI ``POST /api/jobs/submit`` hashes the parameters, stores
  the job with one ``INSERT ... ON CONFLICT (job_hash) DO NOTHING RETURNING id`` (a durable
  commit), and publishes one Celery message carrying the job id.
- ``floor.execute`` (here): one ``UPDATE ... WHERE status = 'pending'`` claims the row (one
  winner; its commit does not wait for the disk, as Runpack's claim), the no-op runs, and one
  ``UPDATE ... WHERE status = 'claimed'`` completes it (a durable commit).

The Celery app is raw Celery's (``bench/raw_celery_app.py``: late acks,
reject-on-worker-lost, prefetch 1, no result backend, JSON), on Runpack's Redis channel.
Its worker is started by the benchmark as::

    python -m celery -A bench.floor_app worker -Q <queue> --pool prefork --concurrency 2

and reads ``FLOOR_DATABASE_URL`` (libpq) and ``FLOOR_BROKER_URL`` from the environment.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
import psycopg

from bench.raw_celery_app import DEFAULT_BROKER_URL, make_app

TASK_NAME = "floor.execute"

#: The jobs table: the columns a job cache needs to answer and to run a job.
SCHEMA = """
CREATE TABLE floor_jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job_hash text NOT NULL UNIQUE,
    job_type text NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    input_params jsonb NOT NULL,
    output_data jsonb,
    created_at bigint NOT NULL,
    claimed_at bigint,
    finished_at bigint
)
"""
NOW_MS = "(extract(epoch from clock_timestamp()) * 1000)::bigint"
INSERT = (
    "INSERT INTO floor_jobs (job_hash, job_type, input_params, created_at)"
    f" VALUES (%s, %s, %s, {NOW_MS}) ON CONFLICT (job_hash) DO NOTHING RETURNING id"
)
EXISTING = "SELECT id, status FROM floor_jobs WHERE job_hash = %s"
CLAIM = (
    f"UPDATE floor_jobs SET status = 'claimed', claimed_at = {NOW_MS}"
    " WHERE id = %s AND status = 'pending' RETURNING input_params"
)
COMPLETE = (
    f"UPDATE floor_jobs SET status = 'completed', output_data = %s, finished_at = {NOW_MS}"
    " WHERE id = %s AND status = 'claimed'"
)


#: What the no-op job returns, as sent.
OUTPUT = orjson.dumps({"ok": True}).decode()


def open_connections(url: str) -> tuple[psycopg.Connection[Any], psycopg.Connection[Any]]:
    """(claim, complete): autocommit, the claim's session committing without waiting for
    the disk."""
    claim = psycopg.connect(url, autocommit=True)
    claim.execute("SET synchronous_commit = off")
    return claim, psycopg.connect(url, autocommit=True)


_connections: tuple[int, psycopg.Connection[Any], psycopg.Connection[Any]] | None = None


def connections() -> tuple[psycopg.Connection[Any], psycopg.Connection[Any]]:
    """This process's ``open_connections``; a forked pool child opens its own."""
    global _connections
    if _connections is None or _connections[0] != os.getpid():
        _connections = (os.getpid(), *open_connections(os.environ["FLOOR_DATABASE_URL"]))
    return _connections[1], _connections[2]


#: Raw Celery's app, settings and channel (``bench/raw_celery_app.py``).
app = make_app(os.environ.get("FLOOR_BROKER_URL", DEFAULT_BROKER_URL), channel="runpack")


@app.task(name=TASK_NAME, shared=False)  # type: ignore[untyped-decorator]
def execute(job_id: str) -> None:
    """Claim, run the no-op, complete; a message for a job no longer pending does nothing."""
    claim, complete = connections()
    if claim.execute(CLAIM, [job_id]).fetchone() is None:
        return
    complete.execute(COMPLETE, [OUTPUT, job_id])
