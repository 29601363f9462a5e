"""``runpack db``: schema maintenance."""

from __future__ import annotations

import typer

from runpack_api.cli.common import console, load_settings

app = typer.Typer(help="Database schema commands.", no_args_is_help=True)


@app.command()
def upgrade() -> None:
    """Apply every pending migration to RUNPACK_DATABASE_URL."""
    from runpack_tasks.jobstore import schema

    settings = load_settings(require_keys=False)
    schema.upgrade(settings.database_url)
    console.print("database schema is up to date")
