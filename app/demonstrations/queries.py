"""Every SELECT/INSERT of demonstrations and of the demonstration lineage of SFT policy versions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from app.models import Demonstration, ModelVersionDemonstration, Prompt

_CHUNK = 1000


@dataclass(frozen=True)
class DemonstrationRow:
    """A demonstration with the prompt it answers (for training)."""

    id: int
    prompt: Prompt
    text: str


def of_ranking(db: Session, ranking_id: int) -> Demonstration | None:
    return db.scalars(select(Demonstration).where(Demonstration.ranking_id == ranking_id)).first()


def add(db: Session, demonstration: Demonstration) -> None:
    db.add(demonstration)
    db.flush()


def remove(db: Session, demonstration: Demonstration) -> None:
    db.delete(demonstration)
    db.flush()


def insert_rows(db: Session, rows: Sequence[dict[str, Any]]) -> int:
    for start in range(0, len(rows), _CHUNK):
        db.execute(insert(Demonstration), list(rows[start : start + _CHUNK]))
    return len(rows)


def texts_of(db: Session, prompt_ids: Iterable[int]) -> set[tuple[int, str]]:
    """(prompt id, text) of every demonstration of these prompts."""
    wanted, found = sorted(set(prompt_ids)), set[tuple[int, str]]()
    for start in range(0, len(wanted), _CHUNK):
        stmt = select(Demonstration.prompt_id, Demonstration.text).where(
            Demonstration.prompt_id.in_(wanted[start : start + _CHUNK]))
        found.update((int(p), str(t)) for p, t in db.execute(stmt))
    return found


def _of_project(project_id: int, up_to: int | None) -> Any:
    stmt = select(Demonstration).join(Prompt, Prompt.id == Demonstration.prompt_id).where(
        Prompt.project_id == project_id)
    return stmt if up_to is None else stmt.where(Demonstration.id <= up_to)


def count(db: Session, project_id: int, up_to: int | None = None) -> int:
    stmt = _of_project(project_id, up_to).with_only_columns(func.count(Demonstration.id))
    return int(db.scalar(stmt) or 0)


def max_id(db: Session, project_id: int) -> int:
    stmt = _of_project(project_id, None).with_only_columns(func.max(Demonstration.id))
    return int(db.scalar(stmt) or 0)


def for_training(db: Session, project_id: int, up_to: int) -> list[DemonstrationRow]:
    """The project's demonstrations with id <= `up_to`, oldest first, with their prompts."""
    stmt = (select(Demonstration.id, Demonstration.text, Prompt)
            .join(Prompt, Prompt.id == Demonstration.prompt_id)
            .where(Prompt.project_id == project_id, Demonstration.id <= up_to).order_by(Demonstration.id))
    return [DemonstrationRow(int(i), prompt, str(text)) for i, text, prompt in db.execute(stmt)]


def replace_lineage(db: Session, version_id: int, demonstration_ids: Sequence[int]) -> None:
    """The demonstrations that trained `version_id` (rows of an interrupted attempt are replaced)."""
    db.execute(delete(ModelVersionDemonstration).where(ModelVersionDemonstration.model_version_id == version_id))
    ids = sorted(set(demonstration_ids))
    for start in range(0, len(ids), _CHUNK):
        db.execute(insert(ModelVersionDemonstration),
                   [{"model_version_id": version_id, "demonstration_id": d} for d in ids[start : start + _CHUNK]])


def lineage(db: Session, version_id: int) -> list[int]:
    stmt = select(ModelVersionDemonstration.demonstration_id).where(
        ModelVersionDemonstration.model_version_id == version_id)
    return list(db.scalars(stmt.order_by(ModelVersionDemonstration.demonstration_id)))


def lineage_counts(db: Session, version_ids: Sequence[int]) -> dict[int, int]:
    if not version_ids:
        return {}
    stmt = (select(ModelVersionDemonstration.model_version_id, func.count())
            .where(ModelVersionDemonstration.model_version_id.in_(list(version_ids)))
            .group_by(ModelVersionDemonstration.model_version_id))
    return {int(v): int(n) for v, n in db.execute(stmt)}
