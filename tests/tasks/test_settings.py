"""Settings (SPEC §5): defaults, and one clear line naming a bad variable."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys

import pytest

from runpack_tasks.settings import SettingsError, get_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RUNPACK_"):
            monkeypatch.delenv(name)


def test_defaults_are_the_specs() -> None:
    settings = get_settings()
    assert settings.database_url == "sqlite:///runpack.db"
    assert settings.broker_url.startswith("filesystem://")
    assert (
        settings.heartbeat_timeout_s,
        settings.runner_active_s,
        settings.reap_interval_s,
        settings.max_attempts,
    ) == (90, 300, 15, 3)
    assert (
        settings.rate_submit,
        settings.rate_status,
        settings.rate_runner,
        settings.rate_admin,
        settings.rate_batch,
    ) == ("10/minute", "60/minute", "120/minute", "1000/minute", "10/minute")
    assert (
        settings.max_input_bytes,
        settings.max_output_bytes,
        settings.max_console_bytes,
        settings.max_error_bytes,
        settings.max_batch_jobs,
        settings.max_batch_bytes,
    ) == (102400, 512000, 1048576, 10240, 1000, 10 * 1024 * 1024)
    assert settings.trusted_proxies == []


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPACK_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("RUNPACK_TRUSTED_PROXIES", "127.0.0.2, 10.0.0.0/8")
    monkeypatch.setenv("RUNPACK_BROKER_URL", "redis://127.0.0.1:6379/0")
    settings = get_settings()
    assert settings.max_attempts == 1
    assert settings.trusted_proxies == [
        ipaddress.ip_network("127.0.0.2/32"),
        ipaddress.ip_network("10.0.0.0/8"),
    ]
    assert settings.rate_limit_storage_url == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("RUNPACK_DATABASE_URL", "not a url", "RUNPACK_DATABASE_URL: not a database URL"),
        ("RUNPACK_DATABASE_URL", "mysql://x/y", "RUNPACK_DATABASE_URL: only sqlite"),
        ("RUNPACK_BROKER_URL", "localhost", "RUNPACK_BROKER_URL: 'localhost' is not a URL"),
        (
            "RUNPACK_HEARTBEAT_TIMEOUT_S",
            "-5",
            "RUNPACK_HEARTBEAT_TIMEOUT_S: Input should be greater",
        ),
        (
            "RUNPACK_MAX_ATTEMPTS",
            "0",
            "RUNPACK_MAX_ATTEMPTS: Input should be greater than or equal",
        ),
        ("RUNPACK_RATE_SUBMIT", "lots", "RUNPACK_RATE_SUBMIT: 'lots' is not a rate"),
        (
            "RUNPACK_MAX_INPUT_BYTES",
            "big",
            "RUNPACK_MAX_INPUT_BYTES: Input should be a valid integer",
        ),
        ("RUNPACK_TRUSTED_PROXIES", "not-an-ip", "RUNPACK_TRUSTED_PROXIES"),
        ("RUNPACK_RESULT_TTL_S", "-1", "RUNPACK_RESULT_TTL_S: Input should be greater"),
        ("RUNPACK_VALIDITY_TIMEOUT_S", "0", "RUNPACK_VALIDITY_TIMEOUT_S: Input should be greater"),
        ("RUNPACK_VALIDITY_CACHE_S", "soon", "RUNPACK_VALIDITY_CACHE_S: Input should be a valid"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        get_settings()
    assert str(raised.value).startswith(says)
    assert "\n" not in str(raised.value)


def test_missing_keys_are_named() -> None:
    with pytest.raises(SettingsError, match="RUNPACK_SUBMIT_API_KEY, RUNPACK_RUNNER_API_KEY"):
        get_settings(admin_api_key="a").require_keys()


def test_a_bad_value_stops_runpack_api_with_one_line(tmp_path: object) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPACK_")}
    env["RUNPACK_HEARTBEAT_TIMEOUT_S"] = "-1"
    done = subprocess.run(
        [sys.executable, "-m", "runpack_api.cli", "api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "RUNPACK_HEARTBEAT_TIMEOUT_S" in lines[0]
