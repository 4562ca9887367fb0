"""The labeling facade the routes call: project lookup for annotators and assignment-scoped operations.

Each function resolves the assignment through `own_assignment` first, so another annotator's id is
indistinguishable from a missing one (404) and nothing is changed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.labeling import assignment as tasks
from app.labeling import queries, revision, submission
from app.labeling.errors import NotFound
from app.labeling.schemas import CompletionOut, PromptOut, RankingIn, TaskOut
from app.models import Assignment, Project, User
from app.projects import service as projects


def labeling_project(db: Session, project_id: int) -> Project:
    """A project open for labeling (archived ones are not)."""
    try:
        return projects.get(db, project_id, include_archived=False)
    except projects.ProjectNotFound as exc:
        raise NotFound(str(exc)) from exc


def next_task(db: Session, project: Project, annotator: User) -> tasks.Task | None:
    """The annotator's current task (claiming one if needed), loaded for display; None when done."""
    return tasks.next_task_view(db, project, annotator)


def claim_next(db: Session, project_id: int, annotator: User) -> tuple[Project, tasks.Task | None]:
    """`labeling_project` and `next_task` in one go: the project is read by the statement that takes the
    annotator's claim lock, so asking for the next task costs one round trip less."""
    project = queries.project_locking_annotator(db, project_id, annotator.id)
    if project is None or project.archived_at is not None:
        raise NotFound(f"project {project_id} not found")
    return project, tasks.next_task_view(db, project, annotator, annotator_locked=True)


def _project_of(db: Session, assignment: Assignment) -> Project:
    return projects.get(db, assignment.project_id)


def submit(
    db: Session,
    annotator: User,
    assignment_id: int,
    data: RankingIn,
    client_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Submit a ranking for one of the annotator's assignments (see submission.submit).

    The assignment (locked) and its project come back from one statement; nothing is read twice."""
    found = queries.own_assignment_with_project(db, assignment_id, annotator.id)
    if found is None:
        raise NotFound(f"assignment {assignment_id} not found")
    assignment, project = found
    return submission.store(db, project, annotator, assignment, data, client_info)


def revise(
    db: Session, annotator: User, assignment_id: int, data: RankingIn, now: datetime | None = None
) -> dict[str, Any]:
    """Change the annotator's last submitted ranking (see revision.revise)."""
    row = tasks.own_assignment(db, assignment_id, annotator)
    return revision.revise(db, _project_of(db, row), annotator, assignment_id, data, now)


def open_for_edit(
    db: Session, project: Project, annotator: User, assignment_id: int
) -> tuple[tasks.Task, dict[str, Any]]:
    """The task of a submitted ranking and what it says (ranks, strength, flags, ...), for the edit page."""
    task, ranking = revision.open_for_edit(db, project, annotator, assignment_id)
    shown = list(task.assignment.shown_completion_ids)
    preference = None  # the pairwise scale's value: -3 (A much better) … 0 … 3 (B much better)
    if ranking.strength is not None and len(shown) == 2:
        first_wins = ranking.ranks.get(str(shown[0]), 1) < ranking.ranks.get(str(shown[1]), 1)
        preference = -ranking.strength if first_wins else ranking.strength
    said = {
        "preference": preference,
        "ranks": {int(k): int(v) for k, v in ranking.ranks.items()},
        "strength": ranking.strength,
        "flags": {int(k): list(v) for k, v in (ranking.flags or {}).items()},
        "likert": {int(k): int(v) for k, v in (ranking.likert or {}).items()},
        "rationale": ranking.rationale,
        "demonstration": ranking.demonstration or "",
        "not_rankable": ranking.not_rankable,
        "version": ranking.version,
    }
    return task, said


def editable_last(db: Session, project: Project, annotator: User) -> revision.EditWindow | None:
    """The annotator's last ranking if it may still be changed (see revision.refusal)."""
    return revision.editable_last(db, project, annotator)


def skip(db: Session, annotator: User, assignment_id: int, reason: str) -> Assignment:
    row = tasks.own_assignment(db, assignment_id, annotator)
    tasks.skip(db, row, reason)
    return row


def heartbeat(db: Session, annotator: User, assignment_id: int) -> datetime:
    row = tasks.own_assignment(db, assignment_id, annotator)
    return tasks.heartbeat(db, _project_of(db, row), row)


def task_out(task: tasks.Task) -> TaskOut:
    """The JSON shape of a task: completions in display order with their letters."""
    prompt = task.prompt
    return TaskOut(
        assignment_id=task.assignment.id,
        prompt=PromptOut(id=prompt.id, text=prompt.text, messages=prompt.messages, system=prompt.system),
        completions=[
            CompletionOut(id=c.id, text=c.text, letter=letter)
            for c, letter in zip(task.completions, task.letters, strict=True)
        ],
        lease_expires_at=task.assignment.lease_expires_at,
    )
