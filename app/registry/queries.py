"""Every SELECT/INSERT of the model registry: versions, the active version, lineage rows."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from app.models import Comparison, ModelVersion, ModelVersionComparison

_LINEAGE_CHUNK = 5000


def get(db: Session, version_id: int) -> ModelVersion | None:
    return db.get(ModelVersion, version_id)


def add(db: Session, version: ModelVersion) -> None:
    db.add(version)
    db.flush()


def active(db: Session, project_id: int, kind: str) -> ModelVersion | None:
    stmt = select(ModelVersion).where(
        ModelVersion.project_id == project_id, ModelVersion.kind == kind, ModelVersion.status == "active"
    )
    return db.scalars(stmt.order_by(ModelVersion.id.desc())).first()


def count_of_kind(db: Session, project_id: int, kind: str) -> int:
    stmt = select(func.count()).select_from(ModelVersion).where(
        ModelVersion.project_id == project_id, ModelVersion.kind == kind
    )
    return int(db.scalar(stmt) or 0)


def list_versions(db: Session, project_id: int, kind: str | None = None) -> list[ModelVersion]:
    stmt = select(ModelVersion).where(ModelVersion.project_id == project_id)
    if kind:
        stmt = stmt.where(ModelVersion.kind == kind)
    return list(db.scalars(stmt.order_by(ModelVersion.id.desc())))


def by_job(db: Session, job_id: int, kind: str) -> ModelVersion | None:
    """The version a job created on an earlier attempt (a retry continues it rather than starting over)."""
    stmt = select(ModelVersion).where(ModelVersion.job_id == job_id, ModelVersion.kind == kind)
    return db.scalars(stmt.order_by(ModelVersion.id.desc())).first()


def latest_trained_watermark(db: Session, project_id: int) -> int:
    """The highest data watermark any finished reward-model version was trained up to (0 when none)."""
    stmt = select(func.max(ModelVersion.data_watermark)).where(
        ModelVersion.project_id == project_id,
        ModelVersion.kind == "reward",
        ModelVersion.status.in_(("candidate", "active", "rejected")),
    )
    return int(db.scalar(stmt) or 0)


def fresher_reward_version(db: Session, project_id: int, than: ModelVersion) -> ModelVersion | None:
    """The newest finished reward model trained on more comparisons than `than` (candidate or rejected:
    the promotion rule keeps it from scoring training, but it still knows the newer rankings)."""
    stmt = select(ModelVersion).where(
        ModelVersion.project_id == project_id,
        ModelVersion.kind == "reward",
        ModelVersion.status.in_(("candidate", "rejected")),
        ModelVersion.checkpoint_path.is_not(None),
        ModelVersion.data_watermark > (than.data_watermark or 0),
    )
    return db.scalars(stmt.order_by(ModelVersion.data_watermark.desc(), ModelVersion.id.desc())).first()


def insert_lineage(db: Session, version_id: int, comparison_ids: Sequence[int]) -> None:
    """Bulk insert lineage rows (one executemany per chunk)."""
    ids = sorted(set(comparison_ids))
    for start in range(0, len(ids), _LINEAGE_CHUNK):
        rows = [{"model_version_id": version_id, "comparison_id": c} for c in ids[start : start + _LINEAGE_CHUNK]]
        db.execute(insert(ModelVersionComparison), rows)


def delete_lineage(db: Session, version_id: int) -> None:
    db.query(ModelVersionComparison).filter(ModelVersionComparison.model_version_id == version_id).delete()


def comparison_ids_of(db: Session, version_id: int) -> list[int]:
    """Which comparisons trained this checkpoint."""
    stmt = select(ModelVersionComparison.comparison_id).where(ModelVersionComparison.model_version_id == version_id)
    return list(db.scalars(stmt.order_by(ModelVersionComparison.comparison_id)))


def versions_of_comparison(db: Session, comparison_id: int) -> list[ModelVersion]:
    """Which checkpoints this comparison trained."""
    stmt = (
        select(ModelVersion)
        .join(ModelVersionComparison, ModelVersionComparison.model_version_id == ModelVersion.id)
        .where(ModelVersionComparison.comparison_id == comparison_id)
        .order_by(ModelVersion.id)
    )
    return list(db.scalars(stmt))


def lineage_counts(db: Session, version_ids: Sequence[int]) -> dict[int, int]:
    if not version_ids:
        return {}
    stmt = (
        select(ModelVersionComparison.model_version_id, func.count())
        .where(ModelVersionComparison.model_version_id.in_(version_ids))
        .group_by(ModelVersionComparison.model_version_id)
    )
    return {int(v): int(n) for v, n in db.execute(stmt)}


def max_comparison_id(db: Session, project_id: int) -> int:
    return int(db.scalar(select(func.max(Comparison.id)).where(Comparison.project_id == project_id)) or 0)


def count_comparisons_after(db: Session, project_id: int, watermark: int) -> int:
    """Non-tied comparisons newer than `watermark` (the scheduler's retraining trigger)."""
    stmt = select(func.count()).select_from(Comparison).where(
        Comparison.project_id == project_id, Comparison.id > watermark, Comparison.is_tie.is_(False)
    )
    return int(db.scalar(stmt) or 0)
