"""What every test server has, in process or as a process: keys, settings, clients."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.backends import Backend
from tests.support.plain_http import TLS

#: The address requests come from unless a test picks another loopback address.
LOOPBACK = "127.0.0.1"


@dataclass
class Keys:
    """The three API keys of one server."""

    submit: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    runner: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    admin: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    def env(self) -> dict[str, str]:
        """As RUNPACK_* variables."""
        return {
            "RUNPACK_SUBMIT_API_KEY": self.submit,
            "RUNPACK_RUNNER_API_KEY": self.runner,
            "RUNPACK_ADMIN_API_KEY": self.admin,
        }


GENEROUS_RATES = {
    "RUNPACK_RATE_SUBMIT": "100000/minute",
    "RUNPACK_RATE_STATUS": "100000/minute",
    "RUNPACK_RATE_RUNNER": "100000/minute",
    "RUNPACK_RATE_ADMIN": "100000/minute",
    "RUNPACK_RATE_REGISTER": "100000/minute",
    "RUNPACK_RATE_RUNNER_HOST": "100000/minute",
    "RUNPACK_RATE_BATCH": "100000/minute",
}


#: Tests read the counts their requests just changed.
EXACT_COUNTS = {"RUNPACK_COUNTS_CACHE_S": "0"}


def runpack_variables(
    database_url: str,
    keys: Keys,
    backend: Backend,
    extra: dict[str, str] | None = None,
    tmp_dir: Path | None = None,
) -> dict[str, str]:
    """The RUNPACK_* settings of a test server for ``backend`` (``extra`` wins).

    The embedded default's filesystem broker lives in ``tmp_dir`` when one is given (else
    in the process's working directory, Runpack's default).
    """
    variables = {
        **keys.env(),
        **GENEROUS_RATES,
        **EXACT_COUNTS,
        "RUNPACK_DATABASE_URL": database_url,
    }
    if backend.redis_url:
        variables["RUNPACK_REDIS_URL"] = backend.redis_url
        variables["RUNPACK_BROKER_URL"] = backend.redis_url
    elif tmp_dir is not None:
        variables["RUNPACK_BROKER_URL"] = f"filesystem://{tmp_dir / 'runpack-broker'}"
    variables.update(extra or {})
    return variables


def server_env(
    database_url: str,
    keys: Keys,
    backend: Backend,
    extra: dict[str, str] | None = None,
    tmp_dir: Path | None = None,
) -> dict[str, str]:
    """The environment of a Runpack process: this one's, less its RUNPACK_* variables,
    plus the test server's settings and ``extra`` (which may set non-RUNPACK variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPACK_")}
    env.update(runpack_variables(database_url, keys, backend, extra, tmp_dir))
    return env


@dataclass
class ApiServer:
    """A Runpack API that tests talk to over HTTP semantics; subclasses say how requests
    reach it (``transport``)."""

    url: str
    database_url: str
    keys: Keys

    def headers(self, role: str | None, runner_id: str | None = None) -> dict[str, str]:
        """Authorization for ``role`` (none for ``None``), and X-Runner-ID if given."""
        headers = {} if role is None else {"Authorization": f"Bearer {getattr(self.keys, role)}"}
        if runner_id is not None:
            headers["X-Runner-ID"] = runner_id
        return headers

    def transport(
        self, source: str | None, limits: httpx.Limits | None
    ) -> httpx.BaseTransport | None:
        """How a client's requests reach this server from ``source`` (None: the default)."""
        raise NotImplementedError

    def client(
        self,
        role: str | None = None,
        runner_id: str | None = None,
        *,
        source: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Client:
        """An HTTP client speaking to this server as ``role`` (no key for ``None``), from the
        loopback address ``source``; ``headers`` are added to (or replace) the role's."""
        return httpx.Client(
            base_url=self.url,
            headers={**self.headers(role, runner_id), **(headers or {})},
            timeout=30,
            verify=TLS,
            transport=self.transport(source, kwargs.get("limits")),
            **kwargs,
        )

    def is_healthy(self) -> bool:
        """Whether /health answers 200 with status ok."""
        with self.client() as client:
            health = client.get("/health")
        return health.status_code == 200 and health.json()["status"] == "ok"
