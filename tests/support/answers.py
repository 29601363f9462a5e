"""Answers compared across two servers: status and body, with ids and timestamps masked."""

from __future__ import annotations

import re
from typing import Any

import httpx

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
STAMPS = {"created_at", "updated_at", "claimed_at", "completed_at", "started_at", "last_seen"}


def masked(answer: httpx.Response) -> tuple[int, Any]:
    """Status and body, with ids and timestamps (which differ between two submits) masked."""

    def mask(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: mask(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [mask(v) for v in value]
        if key in STAMPS and value is not None:
            return "<time>"
        return UUID.sub("<id>", value) if isinstance(value, str) else value

    try:
        body: Any = answer.json()
    except ValueError:
        body = answer.text
    return answer.status_code, mask(body)
