"""The ``runpack`` command: server processes, client commands, database maintenance."""

from __future__ import annotations

import typer

from runpack_api.cli import client, db, serve

app = typer.Typer(
    help="Runpack: compute things on demand, and never the same thing twice.",
    no_args_is_help=True,
    add_completion=False,
)
serve.register(app)
client.register(app)
app.add_typer(db.app, name="db")


def main() -> None:
    """Entry point of the ``runpack`` console script."""
    app()
