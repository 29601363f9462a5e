"""Settings with fixed keys for tests that build their own in-process apps."""

from __future__ import annotations

from pathlib import Path

from runpack_tasks.settings import RunpackSettings
from tests.support.backends import Backend

KEYS = {"submit": "direct-submit", "runner": "direct-runner", "admin": "direct-admin"}


def settings_for(database_url: str, backend: Backend, tmp_path: Path) -> RunpackSettings:
    """Settings for an in-process app on the test's database, keys set, no rate limits."""
    broker = backend.redis_url or f"filesystem://{tmp_path / 'broker'}"
    return RunpackSettings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        broker_url=broker,
        redis_url=backend.redis_url,
        submit_api_key=KEYS["submit"],  # type: ignore[arg-type]
        runner_api_key=KEYS["runner"],  # type: ignore[arg-type]
        admin_api_key=KEYS["admin"],  # type: ignore[arg-type]
        rate_submit="100000/minute",
        rate_status="100000/minute",
        rate_register="100000/minute",
        result_cache_ttl_s=60,
    )
