"""The demo seed: idempotent, generated passwords only, prompts imported through the import service."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth import service as auth
from app.demo.seed import ANNOTATOR_EMAIL, PROJECT_NAME, seed_demo
from app.models import Completion, Demonstration, ImportRecord, Project, Prompt, User
from tests.factories import make_user


def test_demo_seed_is_idempotent(db: Session) -> None:
    first = seed_demo(db)
    db.commit()
    assert first.admin is not None and first.admin["password"] and first.annotator is not None
    assert first.admin["password"] != first.annotator["password"]
    project = db.scalars(select(Project).where(Project.name == PROJECT_NAME)).one()
    assert "Ranking guidelines" in project.guidelines
    # 20 prompts ship with 5 candidates to rank; 10 wait for the policy to sample their candidates.
    assert db.scalar(select(func.count()).where(Prompt.project_id == project.id)) == 30
    assert db.scalar(select(func.count()).select_from(Completion)) == 100
    # 8 prompts carry a demonstration: the SFT stage trains on them at the first start (docs/worker.md).
    assert first.import_counts is not None and first.import_counts["demonstrations_added"] == 8
    assert db.scalar(select(func.count()).select_from(Demonstration)) == 8
    assert db.scalar(select(func.count()).where(ImportRecord.status == "succeeded")) == 1
    login = auth.login(db, first.admin["email"], first.admin["password"], session_hours=1, max_failures=5,
                       lockout_minutes=1)
    assert login.user is not None and login.user.role == "admin"

    second = seed_demo(db)
    db.commit()
    assert second.admin is None and second.annotator is None
    assert second.import_counts is not None and second.import_counts["prompts_added"] == 0
    assert db.scalar(select(func.count()).select_from(Prompt)) == 30
    assert db.scalar(select(func.count()).select_from(Demonstration)) == 8
    assert db.scalar(select(func.count()).select_from(User)) == 2


def test_demo_creates_no_admin_when_one_exists(db: Session) -> None:
    make_user(db, "admin", email="boss@example.org")
    result = seed_demo(db)
    db.commit()
    assert result.admin is None
    assert db.scalar(select(func.count()).where(User.role == "admin")) == 1
    assert db.scalar(select(User.email).where(User.role == "annotator")) == ANNOTATOR_EMAIL
