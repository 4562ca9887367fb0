"""Quality's plug into the labeling claim (app.labeling.selection's SlotPicker seam): gold injection at
the project's `quality.gold_rate`, pausing annotators flagged below the gold threshold, and the slot
order (highest `slots.priority` first, where active selection stores reward-model uncertainty).

`install()` registers the picker for every project; app.quality.routes calls it on import (so the web
app always has it) and the quality CLI calls it too. With default settings (gold rate 0, no pausing)
it behaves exactly like the labeling default.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from app.labeling.errors import LabelingError
from app.labeling.selection import DefaultPicker, use_picker
from app.labeling.slots import min_candidates
from app.models import Project, Prompt, User
from app.projects.service import settings_of
from app.quality import gold_admin, queries
from app.quality.stats.gold import should_inject_gold


class LabelingPaused(LabelingError):
    """The annotator's gold accuracy is below the project's threshold and pausing is on (403).

    Routes that do not catch labeling errors still answer with the message: app.web.errors maps every
    LabelingError to its status.
    """

    status = 403


class QualityPicker:
    """SlotPicker that injects gold items on a per-annotator schedule and refuses paused annotators."""

    def __init__(self) -> None:
        self._default = DefaultPicker()
        self._rng = random.SystemRandom()

    def order_by(self, project: Project) -> Sequence[ColumnElement[object]]:
        # Active selection writes uncertainty into slots.priority; the default order already uses it.
        return self._default.order_by(project)

    def before_claim(self, db: Session, project: Project, annotator: User) -> Prompt | None:
        cfg = settings_of(project).quality
        if cfg.pause_below_threshold and gold_admin.is_paused(db, project, annotator.id):
            raise LabelingPaused(
                "your labeling in this project is paused: your accuracy on check items is below the "
                "project's threshold; an admin will review it"
            )
        if cfg.gold_rate <= 0:
            return None
        counter = queries.finished_task_count(db, project.id, annotator.id)
        if not should_inject_gold(cfg.gold_rate, annotator.id, counter, seed=project.id):
            return None
        candidates = queries.gold_prompts_for(db, project.id, annotator.id, min_candidates(project))
        if not candidates:
            return None
        return db.get(Prompt, self._rng.choice(candidates))


def install() -> None:
    """Make the quality picker the claim's picker for every project."""
    use_picker(QualityPicker())
