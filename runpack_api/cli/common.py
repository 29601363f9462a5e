"""What every command shares: options declared once, settings loaded with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from runpack_tasks.settings import RunpackSettings, SettingsError, get_settings

console = Console(stderr=True, soft_wrap=True)

#: Where ``runpack up`` keeps the API keys it generated (in its working directory).
KEYS_FILE = Path("runpack.keys")

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
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(2)


def warn(message: str) -> None:
    """Print one warning line."""
    console.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False)


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


def open_database(settings: RunpackSettings, *, migrate: bool) -> None:
    """Migrate the database (``migrate``) or just reach it, or exit 2 with one line naming
    it (password hidden) and what went wrong."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from runpack_tasks.jobstore import queries, schema
    from runpack_tasks.jobstore.db import create_db_engine

    try:
        if migrate:
            schema.migrate(settings.database_url)
        else:
            engine = create_db_engine(settings.database_url, pool_size=1)
            try:
                queries.ping(engine)
            finally:
                engine.dispose()
    except (SQLAlchemyError, schema.SchemaError) as exc:
        shown = make_url(settings.database_url).render_as_string(hide_password=True)
        cause = getattr(exc, "orig", None) or exc
        reason = " ".join(line.strip() for line in str(cause).splitlines() if line.strip())
        raise fail(f"cannot open the database {shown} (RUNPACK_DATABASE_URL): {reason}") from None
