"""Every SELECT/INSERT of the model registry: versions, the active version, lineage rows, the fixed
reward-model test set."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Row, Select, exists, func, insert, or_, select, text
from sqlalchemy.orm import Session

from app.models import (
    Comparison,
    Completion,
    ModelVersion,
    ModelVersionComparison,
    Prompt,
    Ranking,
    TestSetPrompt,
    TestSetVersion,
)
from app.models.enums import VersionKind, VersionStatus

_LINEAGE_CHUNK = 5000


def get(db: Session, version_id: int) -> ModelVersion | None:
    return db.get(ModelVersion, version_id)


def add(db: Session, version: ModelVersion) -> None:
    db.add(version)
    db.flush()


def active(db: Session, project_id: int, kind: str) -> ModelVersion | None:
    stmt = select(ModelVersion).where(
        ModelVersion.project_id == project_id, ModelVersion.kind == kind, ModelVersion.status == VersionStatus.ACTIVE
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
        ModelVersion.kind == VersionKind.REWARD,
        ModelVersion.status.in_((VersionStatus.CANDIDATE, VersionStatus.ACTIVE, VersionStatus.REJECTED)),
    )
    return int(db.scalar(stmt) or 0)


def fresher_reward_version(db: Session, project_id: int, than: ModelVersion) -> ModelVersion | None:
    """The newest finished reward model trained on more comparisons than `than` (candidate or rejected:
    the promotion rule keeps it from scoring training, but it still knows the newer rankings)."""
    stmt = select(ModelVersion).where(
        ModelVersion.project_id == project_id,
        ModelVersion.kind == VersionKind.REWARD,
        ModelVersion.status.in_((VersionStatus.CANDIDATE, VersionStatus.REJECTED)),
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


def share_lock_comparisons(db: Session) -> None:
    """Postgres: wait for every transaction writing comparisons to finish and keep new writers out until this
    transaction ends (app.registry.service.settled_watermark). SQLite commits ids in order: nothing to do."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("LOCK TABLE comparisons IN SHARE MODE"))


def count_comparisons_after(db: Session, project_id: int, watermark: int) -> int:
    """Non-tied comparisons newer than `watermark` (the scheduler's retraining trigger)."""
    stmt = select(func.count()).select_from(Comparison).where(
        Comparison.project_id == project_id, Comparison.id > watermark, Comparison.is_tie.is_(False)
    )
    return int(db.scalar(stmt) or 0)


# --- the fixed test set (app.registry.service.extend_test_set) ------------------------------------------


def test_set_versions(db: Session, project_id: int) -> list[TestSetVersion]:
    stmt = select(TestSetVersion).where(TestSetVersion.project_id == project_id)
    return list(db.scalars(stmt.order_by(TestSetVersion.version)))


def test_set_version(db: Session, project_id: int, version: int | None = None) -> TestSetVersion | None:
    """Test-set version `version` of the project (default: the newest); None when there is none."""
    stmt = select(TestSetVersion).where(TestSetVersion.project_id == project_id)
    if version is not None:
        stmt = stmt.where(TestSetVersion.version == version)
    return db.scalars(stmt.order_by(TestSetVersion.version.desc())).first()


def test_set_prompt_ids(db: Session, project_id: int, version: int | None = None) -> set[int]:
    """The prompts in the project's test set (those that joined up to `version`, default all)."""
    stmt = select(TestSetPrompt.prompt_id).where(TestSetPrompt.project_id == project_id)
    if version is not None:
        stmt = stmt.where(TestSetPrompt.version <= version)
    return {int(p) for p in db.scalars(stmt)}


def add_test_set_version(db: Session, project_id: int, version: int, watermark: int,
                         prompt_ids: Sequence[int]) -> TestSetVersion:
    """Append test-set version `version`: its row and the prompts that join with it."""
    row = TestSetVersion(project_id=project_id, version=version, comparison_watermark=watermark,
                         prompts=len(set(prompt_ids)))
    db.add(row)
    db.flush()
    ids = sorted(set(prompt_ids))
    if ids:
        db.execute(insert(TestSetPrompt),
                   [{"project_id": project_id, "prompt_id": p, "version": version, "added_at": row.created_at}
                    for p in ids])
    db.flush()
    return row


def _human_comparisons(project_id: int, watermark: int, after: int = 0) -> Select[int]:
    """Non-tied comparisons of regular prompts in (after, watermark] made by people: of human or imported
    rankings, or imported pairs without a ranking (AI rankings never)."""
    return (
        select(Comparison.prompt_id)
        .join(Prompt, Prompt.id == Comparison.prompt_id)
        .outerjoin(Ranking, Ranking.id == Comparison.ranking_id)
        .where(Comparison.project_id == project_id, Comparison.id > after, Comparison.id <= watermark,
               Comparison.is_tie.is_(False), Prompt.is_gold.is_(False),
               or_(Comparison.ranking_id.is_(None), Ranking.source != "ai"))
    )


def human_ranked_prompt_ids(db: Session, project_id: int, watermark: int) -> set[int]:
    """Regular prompts with at least one comparison people made, up to `watermark`."""
    return {int(p) for p in db.scalars(_human_comparisons(project_id, watermark).distinct())}


def count_human_comparisons(db: Session, project_id: int, prompt_ids: Sequence[int], after: int,
                            watermark: int) -> int:
    """Comparisons people made on `prompt_ids` with id in (after, watermark]."""
    if not prompt_ids:
        return 0
    stmt = _human_comparisons(project_id, watermark, after).where(Comparison.prompt_id.in_(list(prompt_ids)))
    return int(db.scalar(select(func.count()).select_from(stmt.subquery())) or 0)


def trained_prompt_ids(db: Session, project_id: int) -> set[int]:
    """Prompts any reward-model or DPO version of the project has trained on (through its comparison lineage)."""
    stmt = (
        select(Comparison.prompt_id).distinct()
        .join(ModelVersionComparison, ModelVersionComparison.comparison_id == Comparison.id)
        .join(ModelVersion, ModelVersion.id == ModelVersionComparison.model_version_id)
        .where(ModelVersion.project_id == project_id)
    )
    return {int(p) for p in db.scalars(stmt)}


# --- training snapshots (app.registry.datasets) -----------------------------------------------------------


def snapshot_comparisons(db: Session, project_id: int, watermark: int,
                         test_set_version: int | None = None
                         ) -> Sequence[Row[int, int | None, int, int, int, float, int | None]]:
    """(id, ranking_id, prompt_id, winner_id, loser_id, weight, annotator_id) of the project's non-tied
    comparisons with id <= watermark, in id order; with `test_set_version`, only those of the prompts in the
    test set up to that version."""
    stmt = (
        select(Comparison.id, Comparison.ranking_id, Comparison.prompt_id, Comparison.winner_id, Comparison.loser_id,
               Comparison.weight, Comparison.annotator_id)
        .where(Comparison.project_id == project_id, Comparison.id <= watermark, Comparison.is_tie.is_(False))
    )
    if test_set_version is not None:
        stmt = stmt.where(Comparison.prompt_id.in_(
            select(TestSetPrompt.prompt_id).where(TestSetPrompt.project_id == project_id,
                                                  TestSetPrompt.version <= test_set_version)))
    return db.execute(stmt.order_by(Comparison.id)).all()


def rankings_by_ids(db: Session, ranking_ids: Sequence[int]) -> list[Ranking]:
    return list(db.scalars(select(Ranking).where(Ranking.id.in_(list(ranking_ids)))))


def completion_texts(db: Session, completion_ids: Sequence[int]) -> dict[int, str]:
    """Completion id -> text, for the given ids."""
    stmt = select(Completion.id, Completion.text).where(Completion.id.in_(list(completion_ids)))
    return dict(db.execute(stmt).tuples().all())


def prompts_by_ids(db: Session, prompt_ids: Sequence[int]) -> dict[int, Prompt]:
    return {p.id: p for p in db.scalars(select(Prompt).where(Prompt.id.in_(list(prompt_ids))))}


def non_gold_prompts(db: Session, project_id: int) -> list[Prompt]:
    """Every non-gold prompt of the project, oldest first."""
    stmt = select(Prompt).where(Prompt.project_id == project_id, Prompt.is_gold.is_(False)).order_by(Prompt.id)
    return list(db.scalars(stmt))


def count_prompts_without_completions(db: Session, project_id: int) -> int:
    """The project's non-gold prompts that have no completion yet."""
    has_completion = exists().where(Completion.prompt_id == Prompt.id)
    stmt = select(func.count()).select_from(Prompt).where(
        Prompt.project_id == project_id, Prompt.is_gold.is_(False), ~has_completion
    )
    return int(db.scalar(stmt) or 0)


def lineage_summary(db: Session, version_id: int) -> tuple[int, int, int]:
    """(comparisons, rankings, prompts) that trained this version, for its page."""
    stmt = (
        select(func.count(), func.count(func.distinct(Comparison.ranking_id)), func.count(func.distinct(Comparison.prompt_id)))
        .select_from(ModelVersionComparison)
        .join(Comparison, Comparison.id == ModelVersionComparison.comparison_id)
        .where(ModelVersionComparison.model_version_id == version_id)
    )
    row = db.execute(stmt).one()
    return int(row[0]), int(row[1]), int(row[2])


def completions_written(db: Session, version_id: int) -> int:
    """How many completions this version generated."""
    return int(db.scalar(select(func.count()).where(Completion.model_version_id == version_id)) or 0)
