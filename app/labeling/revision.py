"""Changing a submitted ranking: the annotator's last one, within the project's edit window, untrained.

A change is a new version, not an overwrite: the ranking row keeps its id and takes the new content (so every
reader of rankings sees the current version only), the old content is kept in `ranking_versions`, and the
ranking's comparisons are regenerated. A ranking whose comparisons are in a model's lineage, or at or below
a training watermark (a model version's or a queued/running job's), has trained or is about to: it stays.

Idempotent like a submit: posting the current content again returns the stored result and adds no version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.demonstrations import service as demonstrations
from app.labeling import queries
from app.labeling.assignment import Task, load_task, own_assignment
from app.labeling.errors import Conflict, NotFound
from app.labeling.schemas import RankingIn
from app.labeling.submission import NO_FLAGS, comparison_rows, payload_hash, result_of, validate
from app.models import Assignment, Project, Ranking, RankingVersion, User, utcnow
from app.projects.service import settings_of


@dataclass(frozen=True)
class EditWindow:
    """The annotator's last ranking, still open to change until `closes_at`."""

    assignment_id: int
    version: int
    closes_at: datetime
    minutes_left: int


def refusal(db: Session, project: Project, assignment: Assignment, ranking: Ranking, now: datetime) -> str | None:
    """Why this ranking cannot be changed now, in words for the annotator; None when it can."""
    minutes = settings_of(project).labeling.edit_window_minutes
    if minutes <= 0:
        return "this project does not allow changing a submitted ranking"
    if assignment.status != "submitted" or assignment.finished_at is None:
        return "this task was not submitted"
    latest = queries.latest_ranking(db, project.id, assignment.annotator_id)
    if latest is None or latest.id != ranking.id:
        return "only your last submitted ranking can be changed"
    closes = assignment.finished_at + timedelta(minutes=minutes)
    if now > closes:
        return f"the {minutes}-minute window to change it closed at {closes:%H:%M} UTC"
    lowest, in_lineage = queries.trained_comparison_ids(db, ranking.id)
    if in_lineage or (lowest is not None and lowest <= queries.highest_training_watermark(db, project.id)):
        return "it has already been used to train a model"
    return None


def editable_last(db: Session, project: Project, annotator: User, now: datetime | None = None) -> EditWindow | None:
    """The annotator's last ranking in the project if they may still change it (the page offers the link)."""
    now = now or utcnow()
    ranking = queries.latest_ranking(db, project.id, annotator.id)
    if ranking is None or ranking.assignment_id is None:
        return None
    assignment = queries.assignment(db, ranking.assignment_id)
    if assignment is None or refusal(db, project, assignment, ranking, now) is not None:
        return None
    assert assignment.finished_at is not None  # refusal() checked it
    closes = assignment.finished_at + timedelta(minutes=settings_of(project).labeling.edit_window_minutes)
    left = max(1, math.ceil((closes - now).total_seconds() / 60))
    return EditWindow(assignment.id, ranking.version, closes, left)


def _current(db: Session, project: Project, annotator: User, assignment_id: int,
             *, for_update: bool = False) -> tuple[Assignment, Ranking]:
    assignment = own_assignment(db, assignment_id, annotator, for_update=for_update)
    if assignment.project_id != project.id:
        raise NotFound(f"assignment {assignment_id} not found")
    ranking = queries.ranking_for(db, assignment.id)
    if ranking is None:
        raise Conflict("this task has no submitted ranking to change")
    return assignment, ranking


def open_for_edit(db: Session, project: Project, annotator: User, assignment_id: int,
                  now: datetime | None = None) -> tuple[Task, Ranking]:
    """The task and its current ranking, for the edit page; Conflict (with the reason) when it is closed."""
    assignment, ranking = _current(db, project, annotator, assignment_id)
    reason = refusal(db, project, assignment, ranking, now or utcnow())
    if reason is not None:
        raise Conflict(f"Your ranking can no longer be changed: {reason}.")
    return load_task(db, assignment), ranking


def revise(
    db: Session,
    project: Project,
    annotator: User,
    assignment_id: int,
    data: RankingIn,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Store `data` as the next version of the annotator's ranking of this task (see the module docstring)."""
    now = now or utcnow()
    assignment, ranking = _current(db, project, annotator, assignment_id, for_update=True)
    digest = payload_hash(data)
    if digest == ranking.payload_hash:
        return {**result_of(db, ranking), "version": ranking.version}
    # Keep new training watermarks out until this transaction ends, so none lands between the check and
    # the regenerated comparisons.
    queries.hold_back_watermarks(db)
    reason = refusal(db, project, assignment, ranking, now)
    if reason is not None:
        raise Conflict(f"Your ranking could not be changed: {reason}.", data.echo())
    ranks = validate(data, list(assignment.shown_completion_ids), settings_of(project).labeling)
    queries.add(db, RankingVersion(
        ranking_id=ranking.id, version=ranking.version, ranks=dict(ranking.ranks), strength=ranking.strength,
        flags=dict(ranking.flags or {}), likert=dict(ranking.likert or {}), rationale=ranking.rationale,
        not_rankable=ranking.not_rankable, demonstration=ranking.demonstration, payload_hash=ranking.payload_hash,
        created_at=ranking.revised_at or ranking.created_at, superseded_at=now,
    ))
    queries.delete_comparisons(db, ranking.id)
    ranking.ranks = {str(k): v for k, v in ranks.items()}
    ranking.flags = {str(k): sorted(set(v) - {NO_FLAGS}) for k, v in data.flags.items()}
    ranking.likert = {str(k): v for k, v in data.likert.items()}
    ranking.rationale = data.rationale.strip()
    ranking.strength = None if data.not_rankable else data.strength
    ranking.not_rankable = data.not_rankable
    ranking.demonstration = (data.demonstration or "").strip() or None
    ranking.payload_hash = digest
    ranking.version += 1
    ranking.revised_at = now
    db.flush()
    demonstrations.sync_ranking(db, ranking)
    if not data.not_rankable:
        queries.add_comparisons(db, comparison_rows(ranking, assignment, ranks))
    return {**result_of(db, ranking), "version": ranking.version}

