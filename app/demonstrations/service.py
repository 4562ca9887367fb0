"""Demonstrations as data: kept in step with the demonstration an annotator writes beside a ranking, added
by imports (never twice the same text for a prompt), read for SFT training up to a watermark, and the
lineage of the SFT versions trained on them. Never commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.demonstrations import queries
from app.demonstrations.queries import DemonstrationRow
from app.models import Demonstration, Ranking, utcnow

__all__ = ["DemonstrationRow", "ImportedDemonstration", "add_imported", "count", "for_training", "lineage",
           "lineage_counts", "record_lineage", "sync_ranking", "watermark"]


def sync_ranking(db: Session, ranking: Ranking) -> None:
    """Make the ranking's demonstration row match `ranking.demonstration` (called on submit and on revision).

    A changed text replaces the row (its SFT lineage goes with it, as a revised ranking's comparisons do);
    a removed one deletes it."""
    text = (ranking.demonstration or "").strip()
    existing = queries.of_ranking(db, ranking.id)
    if existing is not None and existing.text == text:
        return
    if existing is not None:
        queries.remove(db, existing)
    if text:
        queries.add(db, Demonstration(prompt_id=ranking.prompt_id, text=text, source="annotator",
                                      ranking_id=ranking.id, annotator_id=ranking.annotator_id,
                                      created_at=ranking.revised_at or ranking.created_at or utcnow()))


@dataclass(frozen=True)
class ImportedDemonstration:
    prompt_id: int
    text: str


def add_imported(db: Session, items: Iterable[ImportedDemonstration], import_id: int) -> int:
    """Store imported demonstrations, leaving out those whose prompt already has the same text (so importing
    a file twice, or the project's own `sft` export, adds nothing); returns how many were added."""
    wanted = list(items)
    seen = queries.texts_of(db, (d.prompt_id for d in wanted))
    now, rows = utcnow(), []
    for d in wanted:
        if (d.prompt_id, d.text) in seen:
            continue
        seen.add((d.prompt_id, d.text))
        rows.append({"prompt_id": d.prompt_id, "text": d.text, "source": "imported", "import_id": import_id,
                     "created_at": now})
    return queries.insert_rows(db, rows)


def count(db: Session, project_id: int) -> int:
    return queries.count(db, project_id)


def watermark(db: Session, project_id: int) -> int:
    """The highest demonstration id of the project (0 when none): an SFT job's retries train on exactly
    the demonstrations up to the one its first attempt saw."""
    return queries.max_id(db, project_id)


def for_training(db: Session, project_id: int, up_to: int) -> list[DemonstrationRow]:
    return queries.for_training(db, project_id, up_to)


def record_lineage(db: Session, version_id: int, demonstration_ids: Sequence[int]) -> None:
    """Lineage of an SFT version: the demonstrations it trained on."""
    queries.replace_lineage(db, version_id, demonstration_ids)
    db.flush()


def lineage(db: Session, version_id: int) -> list[int]:
    return queries.lineage(db, version_id)


def lineage_counts(db: Session, version_ids: Sequence[int]) -> dict[int, int]:
    return queries.lineage_counts(db, version_ids)
