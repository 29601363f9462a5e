"""A private ``redis-server`` on a free loopback port, for tests that flush or stop it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.support.server import LOOPBACK
from tests.support.waiting import free_port, wait_for


@contextmanager
def private_redis(tmp_dir: Path) -> Iterator[str]:
    """Start redis-server on loopback (no persistence, files in ``tmp_dir``); yield its
    URL once it answers; kill it afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            *("--bind", LOOPBACK, "--port", str(port), "--dir", str(tmp_dir)),
            *("--save", "", "--appendonly", "no"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://{LOOPBACK}:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        wait_for(client.ping, timeout_s=30, what=f"redis-server on port {port}")
        client.close()
        yield url
    finally:
        process.kill()
        process.wait()
