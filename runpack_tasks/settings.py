"""Runpack's typed settings, read from ``RUNPACK_*`` environment variables."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///runpack.db"
DEFAULT_BROKER_URL = "filesystem://runpack-broker"
#: Where ``runpack up`` and ``runpack api`` listen unless told, so where clients look.
DEFAULT_API_HOST = "127.0.0.1"
DEFAULT_API_PORT = 8000
DEFAULT_API_URL = f"http://{DEFAULT_API_HOST}:{DEFAULT_API_PORT}"

#: What a browser sends as ``Origin``: scheme, host and optional port, no path.
ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s]+", re.IGNORECASE)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(Exception):
    """Raised when a setting has a value Runpack cannot use; the message names it."""


class RunpackSettings(BaseSettings):
    """Every knob of a Runpack process; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="RUNPACK_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    broker_url: str = DEFAULT_BROKER_URL
    #: Redis used to share rate-limit counters between API processes; defaults to the
    #: broker when the broker is a Redis.
    redis_url: str | None = None

    submit_api_key: SecretStr | None = None
    runner_api_key: SecretStr | None = None
    admin_api_key: SecretStr | None = None

    heartbeat_timeout_s: float = Field(90, gt=0)
    runner_active_s: float = Field(300, gt=0)
    reap_interval_s: float = Field(15, gt=0)
    max_attempts: int = Field(3, ge=1)

    #: Retention (beat deletes finished rows older than this; 0 or unset keeps them):
    #: completed jobs are the cache, kept unless asked; failed and expired jobs for a week,
    #: and runners unseen for a week that hold no claim.
    retain_completed_s: float | None = Field(None, ge=0)
    retain_failed_s: float | None = Field(7 * 24 * 3600, ge=0)
    retain_runners_s: float | None = Field(7 * 24 * 3600, ge=0)

    rate_submit: str = "10/minute"
    rate_status: str = "60/minute"
    rate_runner: str = "120/minute"
    rate_admin: str = "1000/minute"
    #: Runner registrations per client IP.
    rate_register: str = "30/minute"
    #: Runner requests per client IP, whatever runner ids they name (rate_runner is per
    #: runner): minting runner ids buys no fresh budget.
    rate_runner_host: str = "1200/minute"

    #: Long polls (``/api/runner/jobs/available?wait=``) one API process holds at once;
    #: past it a poll is answered at once, as if no job were pending (0: no long polls).
    max_long_polls: int = Field(1000, ge=0)

    #: ``/api/jobs/submit-batch``: a batch counts as one request.
    rate_batch: str = "10/minute"

    max_input_bytes: int = Field(102_400, gt=0)
    max_output_bytes: int = Field(512_000, gt=0)
    max_console_bytes: int = Field(1_048_576, gt=0)
    max_error_bytes: int = Field(10_240, gt=0)
    #: Jobs one ``submit-batch`` request may carry, and the cap on its whole body.
    max_batch_jobs: int = Field(1000, ge=1)
    max_batch_bytes: int = Field(10 * 1024 * 1024, gt=0)

    #: Messages a Celery worker process reserves ahead (Celery's prefetch multiplier);
    #: default 1 on Redis, 4 on the filesystem broker (see celery_app.py).
    worker_prefetch: int | None = Field(None, ge=1)
    #: Seconds before Redis redelivers an unacknowledged message; keep it above the
    #: longest job (a redelivered message for a job already taken does nothing).
    visibility_timeout_s: float = Field(7200, gt=0)
    #: How long publishing waits for an unreachable broker before leaving the job to beat.
    broker_timeout_s: float = Field(2, gt=0)

    trusted_proxies: Annotated[list[IPNetwork], NoDecode] = Field(default_factory=list)
    #: Origins whose web pages may call the API (``*``: any); empty turns CORS off.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])

    #: How long an API process serves a completed result from memory before it looks at
    #: the table again (bounds how long a deleted or expired result can still be served
    #: by another API process).
    result_cache_ttl_s: float = Field(5, ge=0)
    #: Memory an API process may spend on cached completed results.
    result_cache_bytes: int = Field(64 * 1024 * 1024, ge=0)
    #: How often each API process looks for pending jobs its waiting long polls may have
    #: missed (a lost wake-up); one query per process, only while long polls wait.
    wakeup_poll_s: float = Field(5, gt=0)
    #: How long an API process reuses its count of jobs per type and state (admin stats,
    #: the job list's total, /metrics); 0 counts on every request.
    counts_cache_s: float = Field(5, ge=0)

    #: Seconds a completed result is served after it finished, for plugins that set no
    #: ``result_ttl_s`` (0: forever).
    result_ttl_s: float = Field(0, ge=0)
    #: How long a plugin's ``result_valid`` may take before the result counts as invalid.
    validity_timeout_s: float = Field(5, gt=0)
    #: How long a ``result_valid`` answer of True is trusted for that job.
    validity_cache_s: float = Field(60, ge=0)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        # SQLAlchemy and limits are imported by the validators that use them, not with this
        # module: the command-line client loads it and needs neither (a quarter second)
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL: {exc}") from None
        if url.get_backend_name() not in {"sqlite", "postgresql"}:
            raise ValueError("only sqlite:// and postgresql:// databases are supported")
        return value

    @field_validator("broker_url", "redis_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError(f"{value!r} is not a URL (expected scheme://...)")
        return value

    @field_validator(
        "rate_submit",
        "rate_status",
        "rate_runner",
        "rate_admin",
        "rate_register",
        "rate_runner_host",
        "rate_batch",
    )
    @classmethod
    def _check_rate(cls, value: str) -> str:
        from limits import parse as parse_rate

        try:
            parse_rate(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate such as '10/minute'") from None
        return value

    @field_validator("trusted_proxies", "cors_origins", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies", mode="after")
    @classmethod
    def _parse_proxies(cls, value: list[object]) -> list[IPNetwork]:
        return [ipaddress.ip_network(str(item), strict=False) for item in value]

    @field_validator("cors_origins", mode="after")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        origins = [origin.rstrip("/") for origin in value]
        for origin in origins:
            if origin != "*" and not ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin such as https://example.org")
        return origins

    @property
    def rate_limit_storage_url(self) -> str | None:
        """The Redis shared by API processes for rate limits, if any is configured."""
        if self.redis_url:
            return self.redis_url
        if self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return None

    def require_keys(self) -> None:
        """Raise SettingsError unless the three API keys are set."""
        missing = [
            f"RUNPACK_{name.upper()}"
            for name in ("submit_api_key", "runner_api_key", "admin_api_key")
            if getattr(self, name) is None or not getattr(self, name).get_secret_value()
        ]
        if missing:
            raise SettingsError(
                f"{', '.join(missing)} not set: set them, or use 'runpack up', which makes them"
            )


def get_settings(**overrides: object) -> RunpackSettings:
    """Read the settings from the environment; raise SettingsError naming a bad variable."""
    try:
        return RunpackSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"RUNPACK_{field.upper()}: {message}") from None
