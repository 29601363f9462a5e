"""A RabbitMQ virtual host of a test's own on the machine's RabbitMQ (127.0.0.1:5672,
guest/guest), deleted afterwards: its queues and messages vanish with it."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.server import LOOPBACK

RABBITMQ_PORT = 5672


def rabbitmq_available() -> bool:
    """Whether ``rabbitmqctl`` is installed and the broker answers."""
    if shutil.which("rabbitmqctl") is None:
        return False
    return subprocess.run(["rabbitmqctl", "-q", "status"], capture_output=True).returncode == 0


def _ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """A new vhost that guest may use; yields its amqp:// URL, deletes it afterwards."""
    name = f"runpack_test_{uuid.uuid4().hex[:12]}"
    _ctl("add_vhost", name)
    try:
        _ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{LOOPBACK}:{RABBITMQ_PORT}/{name}"
    finally:
        _ctl("delete_vhost", name)
