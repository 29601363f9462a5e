"""``runpack db``: schema maintenance."""

from __future__ import annotations

import typer

from runpack_api.cli.common import console, load_settings, open_database

app = typer.Typer(help="Database schema commands.", no_args_is_help=True)


@app.command()
def upgrade() -> None:
    """Apply every pending migration to RUNPACK_DATABASE_URL."""
    open_database(load_settings(require_keys=False), migrate=True)
    console.print("database schema is up to date")
