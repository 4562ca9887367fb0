"""Registry rules: base versions, creating a version per training job, promotion/rejection, rollback, lineage.

Promotion (decided by the training job, overridable by an admin):
- reward model: active when its held-out accuracy is not worse than the active model's (measured on the
  same held-out groups) by more than `training.rm_accuracy_tolerance`;
- policy: active when its mean reward after training beats the starting policy's, its KL to the
  starting policy stays within `training.kl_budget`, and no reward model trained on newer rankings (a
  judge, see `policy_decision`) sees its mean reward fall.
Otherwise the version is kept as `rejected` with the reason. A policy the gates promote can be held
`provisional` until people confirm it (`promote_provisionally`; the check is app.loop.promotion). Never
commits.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.models import ModelVersion, Project, utcnow
from app.models.enums import PromotionState, VersionKind, VersionStatus
from app.projects.service import settings_of
from app.registry import queries
from app.registry.datasets import load_snapshot, prompt_bucket

log = logging.getLogger("prefloop.registry")

KINDS = tuple(VersionKind)  # for membership checks of user input (`"x" in VersionKind` raises on Python 3.11)


class RegistryError(Conflict, ValueError):
    """A registry request that cannot be honoured; the message says why."""


class VersionNotFound(NotFound, LookupError):
    pass


@dataclass(frozen=True)
class Decision:
    """The outcome of a promotion rule."""

    promoted: bool
    reason: str


def get(db: Session, version_id: int, project_id: int | None = None) -> ModelVersion:
    version = queries.get(db, version_id)
    if version is None or (project_id is not None and version.project_id != project_id):
        raise VersionNotFound(f"model version {version_id} not found")
    return version


def active_version(db: Session, project_id: int, kind: str) -> ModelVersion | None:
    return queries.active(db, project_id, kind)


def configured_base(project: Project, kind: str) -> str:
    training = settings_of(project).training
    return training.policy_model if kind == VersionKind.POLICY else training.reward_model


def ensure_base_version(db: Session, project: Project, kind: str) -> ModelVersion | None:
    """Register the configured base model as version 0 (active, no data) when the project has none of `kind`."""
    if kind not in KINDS:
        raise RegistryError(f"unknown model kind {kind!r}")
    base = configured_base(project, kind)
    if not base or queries.count_of_kind(db, project.id, kind) > 0:
        return queries.active(db, project.id, kind)
    version = ModelVersion(
        project_id=project.id, kind=kind, name=f"{kind}-v0", base_model=base, checkpoint_path=base,
        status=VersionStatus.ACTIVE, status_reason="base model from project settings", metrics={}, training_config={},
        activated_at=utcnow(),
    )
    queries.add(db, version)
    return version


def settled_watermark(db: Session, project_id: int) -> int:
    """The project's highest comparison id below which no comparison can still appear.

    Postgres hands out ids when a row is inserted but transactions commit in any order, so a plain max(id)
    can sit above the id of a submission that has not committed yet: a snapshot taken now would miss that
    comparison and a retry's would not. A SHARE lock waits until every transaction writing the table has
    finished and keeps new writers out until the caller's transaction ends, so call this in a transaction of
    its own and end it at once. SQLite runs one write transaction at a time, so ids commit in order there.
    """
    queries.share_lock_comparisons(db)
    return queries.max_comparison_id(db, project_id)


def version_dir(checkpoint_dir: Path, project_id: int, kind: str, version_id: int) -> Path:
    """Where a version's training output lives: <checkpoint_dir>/<project>/<kind>/<version id>."""
    return Path(checkpoint_dir) / str(project_id) / kind / str(version_id)


def start_version(
    db: Session,
    project: Project,
    kind: str,
    *,
    job_id: int,
    parent: ModelVersion | None,
    base_model: str,
    training_config: dict[str, Any],
    data_watermark: int | None,
) -> ModelVersion:
    """The `training` version of this job: created on the first attempt, the same row on a retry."""
    existing = queries.by_job(db, job_id, kind)
    if existing is not None and existing.status == VersionStatus.TRAINING:
        return existing
    version = ModelVersion(
        project_id=project.id, kind=kind, name=f"{kind}-v{queries.count_of_kind(db, project.id, kind)}",
        base_model=base_model, parent_id=parent.id if parent else None, status=VersionStatus.TRAINING,
        metrics={}, training_config=training_config, data_watermark=data_watermark, job_id=job_id,
    )
    queries.add(db, version)
    return version


def json_safe(value: Any) -> Any:
    """Metrics as strict JSON: NaN/inf become None (Postgres JSON refuses them), tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def record_training(
    db: Session,
    version: ModelVersion,
    *,
    checkpoint_path: str,
    metrics: dict[str, Any],
    comparison_ids: Sequence[int] = (),
    snapshot_hash: str | None = None,
) -> None:
    """Store the trained checkpoint, its metrics and lineage (replacing rows of an interrupted attempt)."""
    version.checkpoint_path = checkpoint_path
    version.metrics = json_safe(metrics)
    version.data_snapshot_hash = snapshot_hash
    version.status = VersionStatus.CANDIDATE
    queries.delete_lineage(db, version.id)
    queries.insert_lineage(db, version.id, comparison_ids)
    db.flush()


def reward_decision(new_accuracy: float | None, active_accuracy: float | None, tolerance: float) -> Decision:
    """The reward-model rule (pure): compare held-out accuracies measured on the same held-out groups."""
    if new_accuracy is None:
        return Decision(False, "no held-out comparisons to measure accuracy on")
    if active_accuracy is None:
        return Decision(True, f"held-out accuracy {new_accuracy:.3f}; no measured active reward model")
    if new_accuracy >= active_accuracy - tolerance:
        return Decision(True, f"held-out accuracy {new_accuracy:.3f} vs active {active_accuracy:.3f} "
                              f"(tolerance {tolerance:.3f})")
    return Decision(False, f"held-out accuracy {new_accuracy:.3f} is worse than the active model's "
                           f"{active_accuracy:.3f} by more than {tolerance:.3f}")


def policy_decision(reward_before: float | None, reward_after: float | None, kl: float | None,
                    kl_budget: float, judges: Mapping[str, tuple[float, float]] | None = None) -> Decision:
    """The policy rule (pure): mean reward improves and KL to the starting policy stays within budget.

    `judges` (name -> mean reward before, after) are reward models trained on newer rankings than the one
    the policy trained against: if any says the policy got worse, it is not promoted. A policy can raise the
    score of a stale reward model while people (and a model fitted to their newer rankings) like it less.
    """
    if reward_before is None or reward_after is None or kl is None:
        return Decision(False, "no held-out evaluation (mean reward / KL) was produced")
    if kl > kl_budget:
        return Decision(False, f"KL {kl:.3f} exceeds the budget {kl_budget:.3f}")
    if reward_after <= reward_before:
        return Decision(False, f"mean reward did not improve ({reward_before:.4f} → {reward_after:.4f})")
    for name, (before, after) in (judges or {}).items():
        if after < before:
            return Decision(False, f"mean reward rose ({reward_before:.4f} → {reward_after:.4f}) but fell under "
                                   f"{name}, trained on newer rankings ({before:.4f} → {after:.4f})")
    checked = f"; also higher under {', '.join(judges)}" if judges else ""
    return Decision(True, f"mean reward {reward_before:.4f} → {reward_after:.4f} at KL {kl:.3f} "
                          f"(budget {kl_budget:.3f}){checked}")


def apply_decision(db: Session, version: ModelVersion, decision: Decision) -> None:
    if decision.promoted:
        promote(db, version, decision.reason)
    else:
        version.status, version.status_reason = VersionStatus.REJECTED, decision.reason
        db.flush()


def promote(db: Session, version: ModelVersion, reason: str, by: str = "") -> ModelVersion | None:
    """Make `version` the active one of its kind; the previously active version becomes a candidate.

    A provisional version superseded this way is no longer waiting for people ("superseded"); a version with
    a promotion state that an admin promotes by hand (`by`) is confirmed by that admin, overruling people.
    """
    if version.status == VersionStatus.TRAINING or not version.checkpoint_path:
        raise RegistryError(f"{version.name} has no finished checkpoint and cannot be activated")
    previous = queries.active(db, version.project_id, version.kind)
    if previous is not None and previous.id != version.id:
        previous.status = VersionStatus.CANDIDATE
        previous.status_reason = f"superseded by {version.name}" + (f" ({by})" if by else "")
        if previous.promotion_state == PromotionState.PROVISIONAL:
            _settle(previous, PromotionState.SUPERSEDED, f"{version.name} was activated before people decided")
    version.status = VersionStatus.ACTIVE
    version.status_reason = reason + (f" ({by})" if by and reason else by)
    version.activated_at = utcnow()
    if by and version.promotion_state is not None and version.promotion_state != PromotionState.CONFIRMED:
        _settle(version, PromotionState.CONFIRMED, f"confirmed by hand by {by}")
    db.flush()
    log.info("%s version %s of project %s activated: %s", version.kind, version.name, version.project_id,
             version.status_reason, extra={"event": "model.activated", "project_id": version.project_id,
                                           "version_id": version.id, "previous_id": previous.id if previous else None,
                                           "by": by})
    return previous


def _settle(version: ModelVersion, state: str, reason: str) -> None:
    version.promotion_state, version.promotion_reason = state, reason[:2000]
    version.promotion_decided_at = utcnow()


def promote_provisionally(db: Session, version: ModelVersion, reason: str, rankings_needed: int) -> ModelVersion | None:
    """Activate a policy the training gates promoted, provisionally: it stays `provisional` until
    `rankings_needed` human rankings that show it beside the version it replaced (the incumbent, kept
    as `incumbent_version_id`) confirm it or roll it back. Without an incumbent it is simply active."""
    previous = promote(db, version, reason)
    if previous is None or previous.id == version.id or rankings_needed <= 0:
        return previous
    version.promotion_state, version.incumbent_version_id = PromotionState.PROVISIONAL, previous.id
    version.promotion_reason = (f"promoted by the training gates; awaits {rankings_needed} human rankings that "
                                f"show it beside {previous.name}")
    version.promotion_decided_at = None
    db.flush()
    return previous


def confirm_by_people(db: Session, version: ModelVersion, reason: str) -> None:
    """People's rankings confirmed a provisional version: it stays active."""
    _settle(version, PromotionState.CONFIRMED, reason)
    db.flush()


def roll_back_by_people(db: Session, version: ModelVersion, incumbent: ModelVersion, reason: str) -> None:
    """People preferred the incumbent: it is active again and the provisional version is rejected."""
    promote(db, incumbent, f"re-activated: people preferred it to {version.name}")
    version.status, version.status_reason = VersionStatus.REJECTED, f"rolled back to {incumbent.name} by people"
    _settle(version, PromotionState.ROLLED_BACK, reason)
    db.flush()


def rollback_target(versions: Sequence[ModelVersion]) -> ModelVersion | None:
    """The version a rollback would re-activate among `versions` (one kind of one project): the most
    recently activated candidate with a checkpoint, or None when there is no active version or no such one."""
    if not any(v.status == VersionStatus.ACTIVE for v in versions):
        return None
    earlier = [v for v in versions if v.status == VersionStatus.CANDIDATE and v.activated_at is not None
               and v.checkpoint_path]
    return max(earlier, key=lambda v: (v.activated_at or v.created_at, v.id)) if earlier else None


def rollback(db: Session, project_id: int, kind: str, by: str = "") -> ModelVersion:
    """Re-activate the version that was active before the current one; the current one is rejected.

    Rejected versions are never rollback targets (promote them by hand if wanted), so rolling back twice
    walks further back instead of bouncing between two versions.
    """
    current = queries.active(db, project_id, kind)
    if current is None:
        raise RegistryError(f"no active {kind} version to roll back")
    target = rollback_target(queries.list_versions(db, project_id, kind))
    if target is None:
        raise RegistryError(f"no earlier {kind} version to roll back to from {current.name}")
    promote(db, target, "rolled back", by)
    by_whom = f" by {by}" if by else ""
    current.status, current.status_reason = VersionStatus.REJECTED, f"rolled back to {target.name}{by_whom}"
    if current.promotion_state in (PromotionState.PROVISIONAL, PromotionState.SUPERSEDED):
        _settle(current, PromotionState.ROLLED_BACK, f"rolled back to {target.name} by hand{by_whom}")
    db.flush()
    return target


def abandon_job_versions(db: Session, job_id: int, reason: str) -> None:
    """A training job ended without a result: its unfinished versions are rejected with the reason."""
    for kind in KINDS:
        version = queries.by_job(db, job_id, kind)
        if version is not None and version.status == VersionStatus.TRAINING:
            version.status, version.status_reason = VersionStatus.REJECTED, f"training did not finish: {reason}"[:2000]
    db.flush()


def lineage(db: Session, version_id: int) -> list[int]:
    """Ids of the comparisons that trained this version."""
    return queries.comparison_ids_of(db, version_id)


def trained_by(db: Session, comparison_id: int) -> list[ModelVersion]:
    """The versions whose training data included this comparison."""
    return queries.versions_of_comparison(db, comparison_id)


def list_versions(db: Session, project_id: int, kind: str | None = None) -> list[ModelVersion]:
    return queries.list_versions(db, project_id, kind)


def find(db: Session, version_id: int) -> ModelVersion | None:
    """A version by id, or None (e.g. a parent that may be gone)."""
    return queries.get(db, version_id)


def lineage_counts(db: Session, version_ids: Sequence[int]) -> dict[int, int]:
    """How many comparisons trained each version, for the model pages."""
    return queries.lineage_counts(db, version_ids)


def lineage_summary(db: Session, version_id: int) -> tuple[int, int, int]:
    """(comparisons, rankings, prompts) that trained this version."""
    return queries.lineage_summary(db, version_id)


def completions_written(db: Session, version_id: int) -> int:
    """How many completions this version generated."""
    return queries.completions_written(db, version_id)


# --- the fixed reward-model test set ----------------------------------------------------------------------


@dataclass(frozen=True)
class TestSet:
    """Version `version` of a project's test set (0: none yet): its prompts, and the comparison watermark
    up to which their human rankings belong to it."""

    __test__ = False  # not a pytest test class

    version: int
    watermark: int
    prompt_ids: frozenset[int]


def test_set(db: Session, project_id: int, version: int | None = None) -> TestSet:
    """Test-set version `version` of the project (default: the newest; version 0 when there is none)."""
    row = queries.test_set_version(db, project_id, version)
    if row is None:
        return TestSet(0, 0, frozenset())
    return TestSet(row.version, int(row.comparison_watermark),
                   frozenset(queries.test_set_prompt_ids(db, project_id, row.version)))


def test_set_prompt_ids(db: Session, project_id: int) -> set[int]:
    """Every prompt in the project's test set (the loop never samples them; no model trains on them)."""
    return queries.test_set_prompt_ids(db, project_id)


def test_set_history(db: Session, project_id: int) -> list[dict[str, Any]]:
    """The test-set versions of the project, oldest first (version, watermark, prompts added, when)."""
    return [{"version": r.version, "comparison_watermark": int(r.comparison_watermark), "prompts_added": r.prompts,
             "created_at": r.created_at.isoformat() if r.created_at else None}
            for r in queries.test_set_versions(db, project_id)]


def extend_test_set(db: Session, project: Project, watermark: int) -> TestSet:
    """Grow the project's test set up to comparison `watermark` by appending a version, and return the
    newest version (unchanged when nothing joins).

    Membership is append-only and never revised: a regular prompt people ranked (human or imported
    rankings, comparisons up to `watermark`) that no model version has trained on joins when its hash bucket
    (app.registry.datasets.prompt_bucket) is below `training.rm_heldout_fraction`; while the set holds fewer
    than that fraction of the ranked prompts (at least one once two are ranked), the lowest buckets of the
    other untrained ones join too (then, only for a set still empty, of trained ones: a project from before
    the test set). At least one ranked prompt always stays out, to train on. A new version is also cut when
    people ranked members again since the last one, so its rankings join; each version fixes the comparison
    watermark its rankings are read up to.
    """
    latest = test_set(db, project.id)
    if latest.version and watermark <= latest.watermark:
        return latest
    fraction = settings_of(project).training.rm_heldout_fraction
    ranked = queries.human_ranked_prompt_ids(db, project.id, watermark)
    members = set(latest.prompt_ids)
    joining: list[int] = []
    if fraction > 0 and len(ranked) >= 2:
        trained = queries.trained_prompt_ids(db, project.id)
        fresh = sorted(ranked - members - trained, key=lambda p: (prompt_bucket(p), p))
        joining = [p for p in fresh if prompt_bucket(p) < fraction]
        target = max(1, round(fraction * len(ranked)))
        fill = fresh + (sorted(ranked - members - set(fresh), key=lambda p: (prompt_bucket(p), p))
                        if not members else [])
        for p in fill:
            if len(members) + len(joining) >= target:
                break
            if p not in joining:
                joining.append(p)
        joining = joining[: max(0, len(ranked) - 1 - len(members))]
    again = queries.count_human_comparisons(db, project.id, sorted(members), latest.watermark, watermark)
    if not joining and not again:
        return latest
    queries.add_test_set_version(db, project.id, latest.version + 1, watermark, joining)
    return TestSet(latest.version + 1, watermark, frozenset(members | set(joining)))


def test_set_groups(db: Session, project_id: int, test: TestSet) -> list[dict[str, Any]]:
    """The ranking groups of test-set version `test`: the human and imported rankings of its prompts, from
    comparisons up to its watermark (plain dicts, app.registry.datasets)."""
    if not test.prompt_ids:
        return []
    snapshot = load_snapshot(db, project_id, test.watermark, "exclude", test_set_version=test.version)
    return snapshot.groups


def test_score(test: TestSet, measured: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The compact record of a model measured on test-set version `test` (pairwise metrics of
    worker.training.reward.eval): accuracy with its interval, calibration (ECE, mean probability), pairs."""
    if not measured or not test.version:
        return None
    calibration = measured.get("calibration") or {}
    return {"test_set_version": test.version, "accuracy": measured.get("accuracy"),
            "accuracy_ci95": measured.get("accuracy_ci95"), "ece": calibration.get("ece"),
            "mean_probability": calibration.get("mean_probability"), "n_pairs": int(measured.get("n_pairs") or 0),
            "n_prompts": int(measured.get("n_prompts") or 0)}


def record_test_score(db: Session, version: ModelVersion, test: TestSet, measured: Mapping[str, Any]) -> None:
    """Add to an older version's metrics what it scored on test-set version `test` (`test_sets`), so it
    compares like for like with the versions trained since."""
    score = test_score(test, measured)
    if score is None:
        return
    metrics = dict(version.metrics or {})
    metrics["test_sets"] = {**(metrics.get("test_sets") or {}), str(test.version): score}
    version.metrics = json_safe(metrics)
    db.flush()


def latest_test_score(metrics: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A version's score on the newest test-set version it was measured on (None when never)."""
    scores = (metrics or {}).get("test_sets") or {}
    if not isinstance(scores, dict) or not scores:
        return None
    newest = max(scores, key=lambda v: int(v))
    score = scores[newest]
    return score if isinstance(score, dict) else None
