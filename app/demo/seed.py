"""Seeding the demo idempotently: admin (only if none exists), annotator, project, and its prompts.

The prompts ship as `prompts.jsonl` (package data) and go through the real import service, so the demo
exercises the same path as a user's upload. Passwords are generated and returned once, never defaulted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, BinaryIO, cast

from sqlalchemy.orm import Session

from app.auth import service as auth
from app.demo import queries
from app.imports.schemas import ImportOptions
from app.imports.service import import_or_raise
from app.projects import queries as project_queries
from app.projects import service as projects
from app.projects.schemas import ProjectCreate

PROJECT_NAME = "Demo: support assistant"
ANNOTATOR_EMAIL = "annotator@example.org"
GUIDELINES = """\
# Ranking guidelines

You are ranking answers a **customer-support assistant** gave to real-looking questions
(account help, billing, how-to, small coding tasks, summaries).

Rank from **best (1)** to worst. A good answer is, in order of importance:

1. **Correct** — no invented policies, wrong commands or made-up facts.
2. **Helpful** — it solves the customer's problem with concrete steps.
3. **Safe and polite** — no rudeness, no unsafe advice (e.g. sharing secrets).
4. **Concise** — no filler; longer is not better.

Refusing a reasonable request is a failure, not a safe choice. Use a tie only when two answers are
genuinely equivalent. Flag answers that are rude, harmful or made up.
"""


@dataclass
class DemoResult:
    """What the seed did; passwords appear only for users created by this run."""

    actions: list[str] = field(default_factory=list)
    admin: dict[str, Any] | None = None
    annotator: dict[str, Any] | None = None
    project_id: int | None = None
    import_counts: dict[str, int] | None = None


def _ensure_user(db: Session, email: str, role: str, result: DemoResult) -> dict[str, Any] | None:
    try:
        auth.get_user_by_email(db, email)
        result.actions.append(f"{role} {email} exists")
        return None
    except auth.AuthError:
        created = auth.create_user(db, email, role)
        result.actions.append(f"created {role} {email}")
        return {"email": created.user.email, "password": created.password}


def seed_demo(db: Session) -> DemoResult:
    """Create whatever part of the demo is missing. Safe to run any number of times. Never commits."""
    result = DemoResult()
    if queries.admin_exists(db):
        result.actions.append("an admin exists; none created")
    else:
        email = os.environ.get("PREFLOOP_DEMO_ADMIN_EMAIL", "admin@example.org")
        result.admin = _ensure_user(db, email, "admin", result)
    result.annotator = _ensure_user(db, ANNOTATOR_EMAIL, "annotator", result)

    project = project_queries.by_name(db, PROJECT_NAME)
    if project is None:
        project = projects.create(db, ProjectCreate(name=PROJECT_NAME, guidelines=GUIDELINES, k_min=4, k_max=5), None)
        result.actions.append(f"created project {PROJECT_NAME!r} (id {project.id})")
    else:
        result.actions.append(f"project {PROJECT_NAME!r} exists (id {project.id})")
    result.project_id = project.id

    source = resources.files("app.demo").joinpath("prompts.jsonl")
    with source.open("rb") as handle:
        outcome = import_or_raise(db, project, cast(BinaryIO, handle), "prompts.jsonl", ImportOptions(format="jsonl"))
    result.import_counts = outcome.counts
    result.actions.append(
        f"imported demo prompts: {outcome.counts['prompts_added']} added, {outcome.counts['prompts_skipped']} present"
    )
    return result
