"""The models are the one declaration of the schema: the Alembic migrations build exactly
what they declare, and the row type follows the jobs table."""

from __future__ import annotations

import ast
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect
from sqlmodel import SQLModel

from runpack_tasks.jobstore import models
from runpack_tasks.jobstore.db import create_db_engine
from runpack_tasks.jobstore.models import JOBS, JobRow, JobStatus
from runpack_tasks.jobstore.schema import (
    HEAD,
    SchemaError,
    alembic_config,
    current_revisions,
    migrate,
    upgrade,
)
from tests.support import libraries_loaded


def _differences(engine: Engine, metadata: sa.MetaData) -> list[Any]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    assert _differences(engine, SQLModel.metadata) == []


def test_the_comparison_sees_columns_their_types_and_nullability(engine: Engine) -> None:
    altered = sa.MetaData()
    jobs = JOBS.to_metadata(altered)
    for table in SQLModel.metadata.tables.values():
        if table.name != "jobs":
            table.to_metadata(altered)
    jobs.append_column(sa.Column("extra", sa.Integer(), nullable=True))
    jobs.c.attempts.type = sa.String(8)
    jobs.c.error_message.nullable = False
    kinds = set()
    for difference in _differences(engine, altered):
        for change in difference if isinstance(difference, list) else [difference]:
            kinds.add(change[0])
    assert {"add_column", "modify_type", "modify_nullable"} <= kinds


def _typed_job_row() -> dict[str, Any]:
    """The fields the type checker's ``JobRow`` declares, and their types, in order."""
    source = ast.parse(Path(models.__file__).read_text())
    for node in ast.walk(source):
        if isinstance(node, ast.ClassDef) and node.name == "JobRow":
            return {
                item.target.id: eval(ast.unparse(item.annotation), {"Any": Any})
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            }
    raise AssertionError("models.py declares no JobRow class for the type checker")


def test_job_row_follows_the_table() -> None:
    assert JobRow._fields == tuple(JOBS.c.keys())
    typed = _typed_job_row()
    assert list(typed) == list(JOBS.c.keys()), "the typed JobRow lists other fields"
    for column in JOBS.c:
        hint = typed[column.name]
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        assert (type(None) in options) == column.nullable, f"{column.name}: nullability"
        (value_type,) = [option for option in options if option is not type(None)]
        sql_type = column.type
        if isinstance(sql_type, sa.TypeDecorator):  # SQLModel's AutoString
            sql_type = sql_type.impl_instance
        # JSON's python type is object; the job columns hold JSON objects
        stored = dict if isinstance(sql_type, sa.JSON) else sql_type.python_type
        assert (typing.get_origin(value_type) or value_type) is stored, (
            f"{column.name}: {value_type} is not {stored}"
        )


def test_every_query_has_an_index(engine: Engine) -> None:
    indexed = {tuple(ix["column_names"]) for ix in inspect(engine).get_indexes("jobs")}
    assert {
        ("status", "job_type", "created_at"),
        ("job_type", "created_at"),
        ("created_at",),
        ("claimed_by", "updated_at"),
    } <= indexed
    unique = inspect(engine).get_unique_constraints("jobs") + [
        ix for ix in inspect(engine).get_indexes("jobs") if ix["unique"]
    ]
    assert any(item["column_names"] == ["job_hash"] for item in unique)


def test_upgrade_twice_is_harmless(database_url: str, engine: Engine) -> None:
    upgrade(database_url)
    assert {"jobs", "runners", "alembic_version"} <= set(inspect(engine).get_table_names())


def test_head_is_the_newest_migration() -> None:
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert scripts.get_heads() == [HEAD]


def test_migrate_brings_an_older_database_to_head(database_url: str, engine: Engine) -> None:
    # Given a database one migration behind
    command.downgrade(alembic_config(database_url), "-1")
    assert current_revisions(database_url) == {str(int(HEAD) - 1).zfill(4)}
    # When it is migrated, Then it is at the newest revision, with every table
    migrate(database_url)
    assert current_revisions(database_url) == {HEAD}
    assert _differences(engine, SQLModel.metadata) == []


def test_migrate_creates_the_schema_of_a_new_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    assert current_revisions(url) == set()
    migrate(url)
    assert current_revisions(url) == {HEAD}
    engine = create_db_engine(url, pool_size=1)
    try:
        assert _differences(engine, SQLModel.metadata) == []
    finally:
        engine.dispose()


def test_migrate_at_head_does_not_load_alembic(database_url: str) -> None:
    code = f"from runpack_tasks.jobstore.schema import migrate\nmigrate({database_url!r})"
    assert libraries_loaded(code, {"alembic"}) == []


def test_a_database_of_a_newer_version_is_refused(database_url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaError, match="9999"):
        migrate(database_url)


def _progress(engine: Engine) -> tuple[Any, Any]:
    with engine.connect() as conn:
        return tuple(conn.execute(sa.select(JOBS.c.progress_current, JOBS.c.progress_total)).one())


def test_progress_becomes_fractional_and_keeps_what_was_stored(
    database_url: str, engine: Engine
) -> None:
    # Given a job with whole-number progress, in a database before fractional progress
    with engine.begin() as conn:
        conn.execute(
            sa.insert(JOBS).values(
                id="job-1",
                job_hash="h" * 64,
                job_type="t",
                input_params={},
                status=JobStatus.IN_PROGRESS.value,
                created_at=1,
                updated_at=1,
                attempts=1,
                progress_current=3,
                progress_total=10,
            )
        )
    command.downgrade(alembic_config(database_url), "0003")
    assert _progress(engine) == (3, 10)
    changed = {
        change[0]
        for difference in _differences(engine, SQLModel.metadata)
        for change in (difference if isinstance(difference, list) else [difference])
        # later migrations add job_counts, change other tables, and add jobs.cache_version
        if change[0] != "add_table"
        and change[2] == "jobs"
        and not (change[0] == "add_column" and change[3].name == "cache_version")
    }
    assert changed == {"modify_type"}

    # When the database is upgraded
    upgrade(database_url)

    # Then the stored progress is kept, fractions fit, and the schema is the models'
    assert _progress(engine) == (3.0, 10.0)
    with engine.begin() as conn:
        conn.execute(sa.update(JOBS).values(progress_current=0.42, progress_total=1))
    assert _progress(engine) == (0.42, 1.0)
    assert _differences(engine, SQLModel.metadata) == []
