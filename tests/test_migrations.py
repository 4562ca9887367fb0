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


def test_ranking_versions_migration_makes_existing_rankings_version_one_and_downgrades(
    dialect: str, tmp_path: Path
) -> None:
    """0004 adds the version (1 for every ranking stored so far), the pairwise strengths and the table of
    superseded versions, and goes down and up again cleanly."""
    for url in _fresh_url(dialect, tmp_path):
        upgrade(url, "0003")
        engine = create_db_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO projects (id, name, guidelines, k_min, k_max, annotations_per_prompt, "
                                  "lease_minutes, allow_fewer_than_k_min, settings, created_at) VALUES "
                                  "(1, 'p', '', 2, 4, 1, 30, false, '{}', CURRENT_TIMESTAMP)"))
                conn.execute(text("INSERT INTO prompts (id, project_id, external_id, metadata, content_hash, is_gold, "
                                  "priority, created_at) VALUES (1, 1, 'x', '{}', 'h', false, 0, CURRENT_TIMESTAMP)"))
                conn.execute(text("INSERT INTO rankings (id, project_id, prompt_id, source, ranks, shown_order, flags, "
                                  "likert, rationale, not_rankable, client_info, payload_hash, suggestion_shown, "
                                  "weight, created_at) VALUES (1, 1, 1, 'human', '{}', '[]', '{}', '{}', '', false, "
                                  "'{}', '', false, 1.0, CURRENT_TIMESTAMP)"))
            upgrade(url)
            with engine.connect() as conn:
                assert conn.execute(text("SELECT version, strength, revised_at FROM rankings")).one() == (1, None, None)
                assert conn.execute(text("SELECT count(*) FROM ranking_versions")).scalar_one() == 0
            assert "strength" in {c["name"] for c in inspect(engine).get_columns("comparisons")}
            command.downgrade(alembic_config(url), "0003")
            engine.dispose()  # the inspector caches the schema per engine
            assert "ranking_versions" not in inspect(engine).get_table_names()
            assert "version" not in {c["name"] for c in inspect(engine).get_columns("rankings")}
            upgrade(url)
            check(url)
        finally:
            engine.dispose()


def test_promotion_state_migration_keeps_versions_and_downgrades(dialect: str, tmp_path: Path) -> None:
    """0003 gives existing model versions no promotion state and an empty reason, refuses unknown states,
    and goes down to 0002 and up again cleanly."""
    for url in _fresh_url(dialect, tmp_path):
        upgrade(url, "0002")
        engine = create_db_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO projects (id, name, guidelines, k_min, k_max, annotations_per_prompt, "
                                  "lease_minutes, allow_fewer_than_k_min, settings, created_at) VALUES "
                                  "(1, 'p', '', 2, 4, 1, 30, false, '{}', CURRENT_TIMESTAMP)"))
                conn.execute(text("INSERT INTO model_versions (id, project_id, kind, name, base_model, status, "
                                  "status_reason, metrics, training_config, created_at) VALUES "
                                  "(1, 1, 'policy', 'policy-v0', 'b', 'active', '', '{}', '{}', CURRENT_TIMESTAMP)"))
            upgrade(url, "0003")
            with engine.connect() as conn:
                row = conn.execute(text("SELECT promotion_state, promotion_reason, incumbent_version_id "
                                        "FROM model_versions")).one()
                assert tuple(row) == (None, "", None)
            with engine.begin() as conn:
                conn.execute(text("UPDATE model_versions SET promotion_state = 'provisional', incumbent_version_id = 1"))
            try:
                with engine.begin() as conn:
                    conn.execute(text("UPDATE model_versions SET promotion_state = 'maybe'"))
            except Exception as exc:  # noqa: BLE001 - either driver's IntegrityError
                assert "promotion_state" in str(exc)
            else:
                raise AssertionError("an unknown promotion state was accepted")
            command.downgrade(alembic_config(url), "0002")
            with engine.connect() as conn:
                assert "promotion_state" not in {c["name"] for c in inspect(conn).get_columns("model_versions")}
            upgrade(url, "0003")
        finally:
            engine.dispose()


def test_account_links_migration_keeps_tokens_working_and_downgrades(dialect: str, tmp_path: Path) -> None:
    """0005: tokens issued before it keep full scope and no expiry; invite/reset links refuse unknown kinds;
    down to 0004 and up again cleanly."""
    for url in _fresh_url(dialect, tmp_path):
        upgrade(url, "0004")
        engine = create_db_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO users (id, email, display_name, role, is_active, is_ai, created_at) "
                                  "VALUES (1, 'a@x.test', 'a', 'admin', true, false, CURRENT_TIMESTAMP)"))
                conn.execute(text("INSERT INTO api_tokens (id, user_id, name, token_hash, prefix, created_at) "
                                  "VALUES (1, 1, 'old', 'h', 'pfl_', CURRENT_TIMESTAMP)"))
            upgrade(url, "0005")
            with engine.connect() as conn:
                assert tuple(conn.execute(text("SELECT scope, expires_at FROM api_tokens")).one()) == ("full", None)
            try:
                with engine.begin() as conn:
                    conn.execute(text("INSERT INTO account_links (kind, token_hash, created_at, expires_at) "
                                      "VALUES ('welcome', 't', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
            except Exception as exc:  # noqa: BLE001 - either driver's IntegrityError
                assert "kind" in str(exc)
            else:
                raise AssertionError("an unknown link kind was accepted")
            command.downgrade(alembic_config(url), "0004")
            with engine.connect() as conn:
                assert "account_links" not in inspect(conn).get_table_names()
                assert "scope" not in {c["name"] for c in inspect(conn).get_columns("api_tokens")}
            upgrade(url, "0005")
        finally:
            engine.dispose()


def test_demonstrations_migration_copies_written_demonstrations_and_downgrades(dialect: str, tmp_path: Path) -> None:
    """0006 turns every demonstration an annotator wrote beside a ranking into a `demonstrations` row (its
    ranking, annotator and time; blank ones left out), adds the SFT lineage table and the version role, and
    goes down to 0005 and up again cleanly."""
    for url in _fresh_url(dialect, tmp_path):
        upgrade(url, "0005")
        engine = create_db_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO users (id, email, display_name, role, is_active, is_ai, created_at) "
                                  "VALUES (1, 'a@x.test', 'a', 'annotator', true, false, CURRENT_TIMESTAMP)"))
                conn.execute(text("INSERT INTO projects (id, name, guidelines, k_min, k_max, annotations_per_prompt, "
                                  "lease_minutes, allow_fewer_than_k_min, settings, created_at) VALUES "
                                  "(1, 'p', '', 2, 4, 1, 30, false, '{}', CURRENT_TIMESTAMP)"))
                conn.execute(text("INSERT INTO prompts (id, project_id, external_id, metadata, content_hash, is_gold, "
                                  "priority, created_at) VALUES (1, 1, 'x', '{}', 'h', false, 0, CURRENT_TIMESTAMP)"))
                for rid, demo in ((1, "Write it like this."), (2, None), (3, "  ")):
                    conn.execute(text("INSERT INTO rankings (id, project_id, prompt_id, annotator_id, source, ranks, "
                                      "shown_order, flags, likert, rationale, not_rankable, demonstration, "
                                      "client_info, payload_hash, suggestion_shown, weight, version, created_at) "
                                      "VALUES (:id, 1, 1, 1, 'human', '{}', '[]', '{}', '{}', '', false, :demo, "
                                      "'{}', '', false, 1.0, 1, '2026-11-30 12:00:00')"), {"id": rid, "demo": demo})
                conn.execute(text("INSERT INTO model_versions (id, project_id, kind, name, base_model, status, "
                                  "status_reason, metrics, training_config, created_at) VALUES "
                                  "(1, 1, 'policy', 'policy-v0', 'b', 'active', '', '{}', '{}', CURRENT_TIMESTAMP)"))
            upgrade(url, "0006")
            with engine.connect() as conn:
                rows = conn.execute(text("SELECT prompt_id, text, source, ranking_id, annotator_id, import_id "
                                         "FROM demonstrations")).all()
                assert [tuple(r) for r in rows] == [(1, "Write it like this.", "annotator", 1, 1, None)]
                assert conn.execute(text("SELECT role FROM model_versions")).scalar_one() is None
                conn.execute(text("INSERT INTO model_version_demonstrations (model_version_id, demonstration_id) "
                                  "SELECT 1, id FROM demonstrations"))
                conn.commit()
            try:
                with engine.begin() as conn:
                    conn.execute(text("UPDATE model_versions SET role = 'teacher'"))
            except Exception as exc:  # noqa: BLE001 - either driver's IntegrityError
                assert "role" in str(exc)
            else:
                raise AssertionError("an unknown version role was accepted")
            command.downgrade(alembic_config(url), "0005")
            with engine.connect() as conn:
                tables = inspect(conn).get_table_names()
                assert "demonstrations" not in tables and "model_version_demonstrations" not in tables
                assert "role" not in {c["name"] for c in inspect(conn).get_columns("model_versions")}
            upgrade(url)
            check(url)
        finally:
            engine.dispose()


def test_test_set_migration_adds_the_append_only_tables_and_downgrades(dialect: str, tmp_path: Path) -> None:
    """0007 adds the fixed reward-model test set (its versions and which prompt joined in which), one row
    per prompt and project, and goes down to 0006 and up again cleanly."""
    for url in _fresh_url(dialect, tmp_path):
        upgrade(url, "0006")
        engine = create_db_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO projects (id, name, guidelines, k_min, k_max, annotations_per_prompt, "
                                  "lease_minutes, allow_fewer_than_k_min, settings, created_at) VALUES "
                                  "(1, 'p', '', 2, 4, 1, 30, false, '{}', CURRENT_TIMESTAMP)"))
                conn.execute(text("INSERT INTO prompts (id, project_id, external_id, metadata, content_hash, is_gold, "
                                  "priority, created_at) VALUES (1, 1, 'x', '{}', 'h', false, 0, CURRENT_TIMESTAMP)"))
            upgrade(url, "0007")
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO test_set_versions (project_id, version, comparison_watermark, prompts, "
                                  "created_at) VALUES (1, 1, 10, 1, CURRENT_TIMESTAMP)"))
                conn.execute(text("INSERT INTO test_set_prompts (project_id, prompt_id, version, added_at) "
                                  "VALUES (1, 1, 1, CURRENT_TIMESTAMP)"))
            try:
                with engine.begin() as conn:
                    conn.execute(text("INSERT INTO test_set_prompts (project_id, prompt_id, version, added_at) "
                                      "VALUES (1, 1, 2, CURRENT_TIMESTAMP)"))
            except Exception as exc:  # noqa: BLE001 - either driver's IntegrityError
                assert "test_set_prompts" in str(exc) or "unique" in str(exc).lower()
            else:
                raise AssertionError("a prompt joined the test set twice")
            command.downgrade(alembic_config(url), "0006")
            with engine.connect() as conn:
                tables = inspect(conn).get_table_names()
                assert "test_set_versions" not in tables and "test_set_prompts" not in tables
            upgrade(url)
            check(url)
        finally:
            engine.dispose()


def test_membership_migration_adds_one_row_per_member_and_downgrades(dialect: str, tmp_path: Path) -> None:
    """0008 adds project membership: one row per (project, user), removed with the project or the user, and
    goes down to 0007 and up again cleanly."""
    for url in _fresh_url(dialect, tmp_path):
        upgrade(url, "0008")
        engine = create_db_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO projects (id, name, guidelines, k_min, k_max, annotations_per_prompt, "
                                  "lease_minutes, allow_fewer_than_k_min, settings, created_at) VALUES "
                                  "(1, 'p', '', 2, 4, 1, 30, false, '{}', CURRENT_TIMESTAMP)"))
                conn.execute(text("INSERT INTO users (id, email, display_name, role, is_active, is_ai, created_at) "
                                  "VALUES (1, 'a@example.org', 'a', 'annotator', true, false, CURRENT_TIMESTAMP)"))
                conn.execute(text("INSERT INTO project_members (project_id, user_id, added_at) "
                                  "VALUES (1, 1, CURRENT_TIMESTAMP)"))
            try:
                with engine.begin() as conn:
                    conn.execute(text("INSERT INTO project_members (project_id, user_id, added_at) "
                                      "VALUES (1, 1, CURRENT_TIMESTAMP)"))
            except Exception as exc:  # noqa: BLE001 - either driver's IntegrityError
                assert "project_members" in str(exc) or "unique" in str(exc).lower()
            else:
                raise AssertionError("a user became a member of one project twice")
            command.downgrade(alembic_config(url), "0007")
            with engine.connect() as conn:
                assert "project_members" not in inspect(conn).get_table_names()
            upgrade(url)
            check(url)
        finally:
            engine.dispose()
