"""Reaching the broker: whether it answers, for /health."""

from __future__ import annotations

import os

from kombu.connection import Connection

from runpack_tasks.celery_app import filesystem_folder

BROKER_CONNECT_TIMEOUT_S = 2.0


def broker_reachable(broker_url: str) -> tuple[bool, str]:
    """(True, "ok") when a connection to the broker opens, else (False, why)."""
    folder = filesystem_folder(broker_url)
    if folder is not None:
        if os.access(folder, os.W_OK):
            return True, "ok"
        return False, f"unreachable: {folder} is not a writable folder"
    try:
        with Connection(broker_url, connect_timeout=BROKER_CONNECT_TIMEOUT_S) as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_CONNECT_TIMEOUT_S)
    except Exception as exc:  # kombu raises many transport-specific errors
        return False, f"unreachable: {type(exc).__name__}: {exc}"
    return True, "ok"
