"""Migrations are the schema: upgrade works on both dialects and the models have no drift (`alembic check`)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from alembic import command
from sqlalchemy import Engine, inspect, text

from app.db import create_db_engine
from app.migrate import alembic_config, check, is_at_head, upgrade
from app.models import Base
from tests.conftest import PG_ADMIN_URL


def test_migrated_schema_matches_models(db_url: str, engine: Engine, dialect: str) -> None:
    assert dialect in ("sqlite", "postgresql")
    assert engine.dialect.name == ("postgresql" if db_url.startswith("postgresql") else "sqlite")
    assert is_at_head(engine)
    check(db_url)  # raises on drift
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())


def test_partial_unique_index_exists(engine: Engine) -> None:
    indexes = {ix["name"]: ix for ix in inspect(engine).get_indexes("assignments")}
    assert indexes["uq_assignments_prompt_annotator_live"]["unique"]


def _fresh_url(dialect: str, tmp_path: Path) -> Iterator[str]:
    if dialect == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    name = f"prefloop_mig_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield re.sub(r"/[^/]*$", f"/{name}", PG_ADMIN_URL)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_loop_rounds_migration_moves_slots_to_their_round_and_downgrades(dialect: str, tmp_path: Path) -> None:
    """0002 gives existing slots and assignments the round of their prompt's completions (a prompt sampled
    by policy-v2 had round 2), and goes down and up again cleanly."""
    for url in _fresh_url(dialect, tmp_path):
        upgrade(url, "0001")
        engine = create_db_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO projects (id, name, guidelines, k_min, k_max, annotations_per_prompt, "
                                  "lease_minutes, allow_fewer_than_k_min, settings, created_at) VALUES "
                                  "(1, 'p', '', 2, 4, 1, 30, false, '{}', CURRENT_TIMESTAMP)"))
                conn.execute(text("INSERT INTO prompts (id, project_id, external_id, metadata, content_hash, is_gold, "
                                  "priority, created_at) VALUES (1, 1, 'x', '{}', 'h', false, 0, CURRENT_TIMESTAMP)"))
                for cid in (1, 2):
                    conn.execute(text("INSERT INTO completions (id, prompt_id, position, text, source, round, "
                                      "metadata, created_at) VALUES (:id, 1, :id, 't', 'model', 2, '{}', "
                                      "CURRENT_TIMESTAMP)"), {"id": cid})
                conn.execute(text("INSERT INTO slots (id, project_id, prompt_id, slot_index, status, priority, "
                                  "created_at) VALUES (1, 1, 1, 0, 'open', 0, CURRENT_TIMESTAMP)"))
            upgrade(url)
            with engine.connect() as conn:
                assert conn.execute(text("SELECT round FROM slots")).scalar_one() == 2
            command.downgrade(alembic_config(url), "0001")
            upgrade(url)
            check(url)
        finally:
            engine.dispose()
