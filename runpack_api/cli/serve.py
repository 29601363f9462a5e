"""Server commands: ``runpack up`` (everything, embedded) and ``runpack api``."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from runpack_api.cli.common import HostOption, PortOption, console, load_settings

KEYS_FILE = Path("runpack.keys")
KEY_NAMES = ("RUNPACK_SUBMIT_API_KEY", "RUNPACK_RUNNER_API_KEY", "RUNPACK_ADMIN_API_KEY")


def _serve_api(host: str, port: int, workers: int) -> None:
    import uvicorn

    from runpack_tasks.jobstore import schema

    settings = load_settings()
    schema.upgrade(settings.database_url)
    uvicorn.run(
        "runpack_api.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=False,  # the API decides itself which proxies to trust
        log_level="info",
    )


def _ensure_keys() -> None:
    """Fill unset API keys from ./runpack.keys, generating that file on first use."""
    if all(os.environ.get(name) for name in KEY_NAMES):
        return
    saved: dict[str, str] = {}
    if KEYS_FILE.exists():
        for line in KEYS_FILE.read_text().splitlines():
            name, _, value = line.partition("=")
            if name in KEY_NAMES and value:
                saved[name] = value
    missing = [name for name in KEY_NAMES if name not in saved]
    if missing:
        saved.update({name: secrets.token_urlsafe(24) for name in missing})
        KEYS_FILE.write_text("".join(f"{name}={saved[name]}\n" for name in KEY_NAMES))
        KEYS_FILE.chmod(0o600)
    for name in KEY_NAMES:
        os.environ.setdefault(name, saved[name])


def up(host: HostOption = "127.0.0.1", port: PortOption = 8000) -> None:
    """Run Runpack on this machine with no server to install: API, on SQLite."""
    _ensure_keys()
    settings = load_settings()
    url = f"http://{host}:{port}"
    keys = {
        "submit": settings.submit_api_key,
        "runner": settings.runner_api_key,
        "admin": settings.admin_api_key,
    }
    console.print(f"[bold]Runpack[/bold] on {url}  (API docs: {url}/docs)")
    for role, key in keys.items():
        assert key is not None
        console.print(f"  {role:<6} key: {key.get_secret_value()}", highlight=False)
    if KEYS_FILE.exists():
        console.print(f"  keys are kept in {KEYS_FILE.resolve()}")
    _serve_api(host, port, workers=1)


def api(
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.", min=1)] = 1,
) -> None:
    """Serve the HTTP API (migrates the database first)."""
    _serve_api(host, port, workers)


def register(app: typer.Typer) -> None:
    """Add the server commands to ``app``."""
    app.command()(up)
    app.command()(api)
