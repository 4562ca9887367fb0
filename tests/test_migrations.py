"""Migrations are the schema: upgrade works on both dialects and the models have no drift (`alembic check`)."""

from __future__ import annotations

from sqlalchemy import Engine, inspect

from app.migrate import check, is_at_head
from app.models import Base


def test_migrated_schema_matches_models(db_url: str, engine: Engine, dialect: str) -> None:
    assert dialect in ("sqlite", "postgresql")
    assert engine.dialect.name == ("postgresql" if db_url.startswith("postgresql") else "sqlite")
    assert is_at_head(engine)
    check(db_url)  # raises on drift
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())


def test_partial_unique_index_exists(engine: Engine) -> None:
    indexes = {ix["name"]: ix for ix in inspect(engine).get_indexes("assignments")}
    assert indexes["uq_assignments_prompt_annotator_live"]["unique"]
