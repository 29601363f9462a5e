"""The API app served in this process: one event loop in a thread, every request of a
synchronous httpx client forwarded into ``httpx.ASGITransport`` on that loop.

Contract tests (what the HTTP API answers) need no process of their own: the same app,
lifespan and middleware answer here, without the start-up and shutdown of uvicorn.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from runpack_api.app import create_app
from runpack_tasks.settings import RunpackSettings
from tests.support.backends import Backend
from tests.support.server import LOOPBACK, ApiServer, Keys, runpack_variables
from tests.support.waiting import free_port


class GivenSettings(RunpackSettings):
    """RunpackSettings from the values given alone: no environment, no .env file."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def settings_from(variables: dict[str, str]) -> RunpackSettings:
    """The settings a process would read from these RUNPACK_* variables (others ignored)."""
    values: dict[str, Any] = {
        name.removeprefix("RUNPACK_").lower(): value
        for name, value in variables.items()
        if name.startswith("RUNPACK_")
    }
    return GivenSettings(**values)


class _Chunks(httpx.AsyncByteStream):
    """A request body replayed chunk by chunk, as the client framed it."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


class PortalTransport(httpx.BaseTransport):
    """A synchronous transport that runs each request through ``app`` on the portal's loop.

    The client's read timeout bounds the app's answer, as it would over a socket.
    """

    def __init__(self, portal: BlockingPortal, app: httpx.ASGITransport) -> None:
        self._portal = portal
        self._app = app

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        chunks = list(request.stream)
        timeout_s = request.extensions.get("timeout", {}).get("read")
        try:
            status, headers, body = self._portal.call(self._forward, request, chunks, timeout_s)
        except TimeoutError:
            raise httpx.ReadTimeout("no answer within the read timeout", request=request) from None
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))

    async def _forward(
        self, request: httpx.Request, chunks: list[bytes], timeout_s: float | None
    ) -> tuple[int, httpx.Headers, bytes]:
        forwarded = httpx.Request(
            request.method, request.url, headers=request.headers, stream=_Chunks(chunks)
        )
        with anyio.fail_after(timeout_s):
            response = await self._app.handle_async_request(forwarded)
            body = b"".join([part async for part in response.stream])  # type: ignore[union-attr]
        return response.status_code, response.headers, body


@dataclass
class InProcessServer(ApiServer):
    """The API app running on a portal's event loop in this process.

    ``url`` names a loopback port nothing listens on: requests go through ``client()``.
    """

    portal: BlockingPortal
    app: FastAPI
    port: int

    def transport(
        self, source: str | None, limits: httpx.Limits | None
    ) -> httpx.BaseTransport | None:
        """Into the app, as if from ``source`` (default 127.0.0.1) on this server's port."""
        # raise_app_exceptions=False: an unhandled error is a 500, as uvicorn answers it
        app = httpx.ASGITransport(
            self.app, client=(source or LOOPBACK, self.port), raise_app_exceptions=False
        )
        return PortalTransport(self.portal, app)


@contextmanager
def running_app(settings: RunpackSettings) -> Iterator[tuple[BlockingPortal, FastAPI]]:
    """``create_app(settings)`` with its lifespan entered on one long-lived loop (a portal's
    thread); everything closed afterwards."""
    with start_blocking_portal() as portal:
        try:
            # built on the loop, as uvicorn builds it, so anything it binds binds there
            app = portal.call(create_app, settings)
            with portal.wrap_async_context_manager(app.router.lifespan_context(app)):
                yield portal, app
        finally:
            # requests a failed test left waiting (long polls) are cancelled, not awaited
            with contextlib.suppress(RuntimeError):
                portal.call(portal.stop, True)


@contextmanager
def app_client(settings: RunpackSettings) -> Iterator[httpx.Client]:
    """A synchronous httpx client into ``create_app(settings)`` running in this process, as
    from 127.0.0.1; an unhandled error in the app is raised, not answered."""
    with running_app(settings) as (portal, app):
        transport = PortalTransport(portal, httpx.ASGITransport(app, client=(LOOPBACK, 50000)))
        with httpx.Client(transport=transport, base_url=f"http://{LOOPBACK}") as client:
            yield client


@contextmanager
def serving_in_process(
    database_url: str,
    backend: Backend,
    tmp_dir: Path,
    extra_env: dict[str, str] | None = None,
    keys: Keys | None = None,
) -> Iterator[InProcessServer]:
    """``create_app`` with the settings ``running_server`` would give the process, its
    lifespan entered on one long-lived loop; everything closed afterwards."""
    keys = keys or Keys()
    settings = settings_from(runpack_variables(database_url, keys, backend, extra_env, tmp_dir))
    port = free_port()
    with running_app(settings) as (portal, app):
        yield InProcessServer(f"http://{LOOPBACK}:{port}", database_url, keys, portal, app, port)
