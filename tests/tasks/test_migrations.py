"""The Alembic migrations build exactly the schema the models declare."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect
from sqlmodel import SQLModel

from runpack_tasks.jobstore import models  # noqa: F401  (registers the tables)
from runpack_tasks.jobstore.schema import upgrade


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert differences == []


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
