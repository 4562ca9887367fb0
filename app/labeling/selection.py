"""The priority seam: which open slot an annotator gets next, and whether a gold prompt is injected first.

The claim (assignment.claim) asks `picker_for(project)` for two things:
- `order_by(project)`: SQL ORDER BY terms over `Slot` columns (the claim adds LIMIT 1 ... SKIP LOCKED).
  The default is `slots.priority` descending, the order of the (project, status, priority) index, so the
  claim stops at the first free slot instead of sorting the pool; among equal priorities the index order
  (about insertion order) finishes prompts one after another. Concurrent annotators do not queue on one
  row: SKIP LOCKED passes over slots another claim holds. (A random tiebreak used to spread them, at the
  price of sorting every free slot on every claim: bench/claim.py compares the two.) Active selection
  writes uncertainty scores into `slots.priority` (see `set_priorities`) and keeps the default order.
- `before_claim(db, project, annotator)`: may return a gold `Prompt` to show instead of a slot; gold
  assignments hold no slot and never count towards a prompt's N.

Another feature plugs in by calling `use_picker(...)` with its own `SlotPicker` (for example one that
consults `settings.quality.gold_rate`); `use_picker(None)` restores the default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from app.labeling import queries
from app.models import Project, Prompt, Slot, User


class SlotPicker(Protocol):
    """How the claim orders candidate slots and whether it injects a gold prompt first."""

    def order_by(self, project: Project) -> Sequence[ColumnElement[Any]]:
        """ORDER BY terms for the candidate slots of `project` (highest preference first)."""
        ...

    def before_claim(self, db: Session, project: Project, annotator: User) -> Prompt | None:
        """A gold prompt to hand out instead of a slot, or None for a normal claim."""
        ...


class DefaultPicker:
    """Highest `slots.priority` first, in index order. Never injects gold."""

    def order_by(self, project: Project) -> Sequence[ColumnElement[Any]]:
        return (Slot.priority.desc(),)

    def before_claim(self, db: Session, project: Project, annotator: User) -> Prompt | None:
        return None


_DEFAULT = DefaultPicker()
_override: SlotPicker | None = None


def use_picker(picker: SlotPicker | None) -> None:
    """Install `picker` for every project (None restores the default)."""
    global _override
    _override = picker


def picker_for(project: Project) -> SlotPicker:
    """The picker the claim uses for `project`."""
    return _override or _DEFAULT


def set_priorities(db: Session, project: Project, scores: Mapping[int, float]) -> int:
    """Set `slots.priority` of every not-yet-done slot of the given prompts (prompt id -> score).

    Higher scores are claimed first. Returns the number of slot rows changed.
    """
    changed = 0
    for prompt_id, score in scores.items():
        changed += queries.set_open_priority(db, project.id, prompt_id, float(score))
    return changed
