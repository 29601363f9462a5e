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
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    return settings
