"""The bare reference endpoint for bench/http_bench.py: FastAPI, ``async def``, constant JSON.

Served with the same uvicorn options as the Runpack API, so the ratio between the two
shows what Runpack adds on top of FastAPI + uvicorn + the HTTP round trip.
"""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/bare")
async def bare() -> dict[str, str]:
    """Constant JSON, no I/O."""
    return {"status": "ok"}
