"""What every command shares: options declared once, settings loaded with one-line errors."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from runpack_tasks.settings import RunpackSettings, SettingsError, get_settings

console = Console(stderr=True, soft_wrap=True)

HostOption = Annotated[str, typer.Option("--host", help="Address to listen on.")]
PortOption = Annotated[int, typer.Option("--port", help="Port to listen on.", min=1, max=65535)]


def load_settings(*, require_keys: bool = True) -> RunpackSettings:
    """The settings, or exit 2 with one line naming the bad variable."""
    try:
        settings = get_settings()
        if require_keys:
            settings.require_keys()
    except SettingsError as exc:
        raise fail(str(exc)) from None
    return settings


def fail(message: str) -> typer.Exit:
    """Print one error line; the Exit (code 2) to raise."""
    console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(2)


def installed_job_types(types: str | None) -> list[str]:
    """The comma-separated ``types`` (default: every installed plugin), each installed here."""
    from runner_plugins import UnknownPlugin, get_plugin, installed_plugins

    chosen = (
        [t.strip() for t in types.split(",") if t.strip()] if types else sorted(installed_plugins())
    )
    try:
        for job_type in chosen:
            get_plugin(job_type)
    except UnknownPlugin as exc:
        raise fail(str(exc)) from None
    return chosen
