"""Creating and evolving the job store's schema with its Alembic migrations.

Alembic is imported only when there is something to migrate: importing it and loading the
migration scripts took about a third of a second of each ``runpack api`` start, which
finds the database at ``HEAD`` nearly every time; looking at the recorded revision is one
query.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from runpack_tasks.jobstore.db import create_db_engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: The newest migration's revision (test_migrations checks it against the scripts).
HEAD = "0007"
#: The table where Alembic records the revision a database is at.
_VERSIONS = sa.table("alembic_version", sa.column("version_num", sa.String))


class SchemaError(Exception):
    """Alembic refused to bring the database to this version's schema (it is at a
    revision this version does not know, say)."""


def alembic_config(database_url: str) -> Config:
    """An Alembic configuration pointing at the packaged migrations and ``database_url``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at ``database_url`` to ``revision`` (the newest by default)."""
    from alembic import command
    from alembic.util import CommandError

    try:
        command.upgrade(alembic_config(database_url), revision)
    except CommandError as exc:
        raise SchemaError(str(exc)) from exc


def current_revisions(database_url: str) -> set[str]:
    """The revisions Alembic recorded in the database (none for a new database)."""
    engine = create_db_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(_VERSIONS.name):
                return set()
            return set(conn.execute(sa.select(_VERSIONS.c.version_num)).scalars())
    finally:
        engine.dispose()


def migrate(database_url: str) -> None:
    """``upgrade`` the database unless it is at ``HEAD`` already."""
    if current_revisions(database_url) != {HEAD}:
        upgrade(database_url)
