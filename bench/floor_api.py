"""The floor's submit endpoint (``bench/floor_app.py`` says what the floor is).

FastAPI ``async def``, served by the benchmark with uvicorn as the Runpack API is. A
submit checks the bearer key, hashes ``{job_type, input_params}`` (orjson with sorted
keys, SHA-256), stores the job (one ``INSERT ... ON CONFLICT DO NOTHING RETURNING``, from a
pool of async psycopg connections in autocommit), publishes one Celery message on the
event loop, and answers 201 with the job id; an existing job answers 200 with its id.

Environment: ``FLOOR_DATABASE_URL`` (libpq), ``FLOOR_BROKER_URL``, ``FLOOR_QUEUE``,
``FLOOR_API_KEY``, ``FLOOR_CONNECTIONS`` (default 4).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

import orjson
import psycopg
from fastapi import FastAPI, Request, Response

from bench.floor_app import EXISTING, INSERT, TASK_NAME
from bench.floor_app import app as celery_app

QUEUE = os.environ.get("FLOOR_QUEUE", "floor")
AUTHORIZATION = f"Bearer {os.environ.get('FLOOR_API_KEY', '')}"
_pool: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()


@contextlib.asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    url = os.environ["FLOOR_DATABASE_URL"]
    for _ in range(int(os.environ.get("FLOOR_CONNECTIONS", "4"))):
        _pool.put_nowait(await psycopg.AsyncConnection.connect(url, autocommit=True))
    yield
    while not _pool.empty():
        await _pool.get_nowait().close()


app = FastAPI(lifespan=lifespan)


def answer(status: int, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


@app.get("/health")
async def health() -> dict[str, str]:
    return {"database": "ok"}


@app.post("/api/jobs/submit")
async def submit(request: Request) -> Response:
    if request.headers.get("authorization") != AUTHORIZATION:
        return answer(401, {"error": "a valid API key is required"})
    try:
        body = orjson.loads(await request.body())
        job_type, params = body["job_type"], body["input_params"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return answer(422, {"error": "job_type and input_params are required"})
    if not isinstance(job_type, str) or not isinstance(params, dict):
        return answer(422, {"error": "job_type is a string, input_params an object"})
    identity = orjson.dumps(
        {"job_type": job_type, "input_params": params}, option=orjson.OPT_SORT_KEYS
    )
    job_hash = hashlib.sha256(identity).hexdigest()
    connection = await _pool.get()
    try:
        row = await (
            await connection.execute(INSERT, [job_hash, job_type, orjson.dumps(params).decode()])
        ).fetchone()
        if row is None:
            existing = await (await connection.execute(EXISTING, [job_hash])).fetchone()
    finally:
        _pool.put_nowait(connection)
    if row is None:
        assert existing is not None
        return answer(200, {"job_id": str(existing[0]), "status": existing[1]})
    job_id = str(row[0])
    celery_app.send_task(TASK_NAME, args=[job_id], queue=QUEUE)
    return answer(201, {"job_id": job_id, "status": "pending"})
