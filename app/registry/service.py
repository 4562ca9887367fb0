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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.models import ModelVersion, Project, utcnow
from app.projects.service import settings_of
from app.registry import queries

KINDS = ("policy", "reward")
PROVISIONAL, CONFIRMED, ROLLED_BACK, SUPERSEDED = "provisional", "confirmed", "rolled_back", "superseded"


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
    return training.policy_model if kind == "policy" else training.reward_model


def ensure_base_version(db: Session, project: Project, kind: str) -> ModelVersion | None:
    """Register the configured base model as version 0 (active, no data) when the project has none of `kind`."""
    if kind not in KINDS:
        raise RegistryError(f"unknown model kind {kind!r}")
    base = configured_base(project, kind)
    if not base or queries.count_of_kind(db, project.id, kind) > 0:
        return queries.active(db, project.id, kind)
    version = ModelVersion(
        project_id=project.id, kind=kind, name=f"{kind}-v0", base_model=base, checkpoint_path=base,
        status="active", status_reason="base model from project settings", metrics={}, training_config={},
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
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("LOCK TABLE comparisons IN SHARE MODE"))
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
    if existing is not None and existing.status == "training":
        return existing
    version = ModelVersion(
        project_id=project.id, kind=kind, name=f"{kind}-v{queries.count_of_kind(db, project.id, kind)}",
        base_model=base_model, parent_id=parent.id if parent else None, status="training",
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
    version.status = "candidate"
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
        version.status, version.status_reason = "rejected", decision.reason
        db.flush()


def promote(db: Session, version: ModelVersion, reason: str, by: str = "") -> ModelVersion | None:
    """Make `version` the active one of its kind; the previously active version becomes a candidate.

    A provisional version superseded this way is no longer waiting for people ("superseded"); a version with
    a promotion state that an admin promotes by hand (`by`) is confirmed by that admin, overruling people.
    """
    if version.status == "training" or not version.checkpoint_path:
        raise RegistryError(f"{version.name} has no finished checkpoint and cannot be activated")
    previous = queries.active(db, version.project_id, version.kind)
    if previous is not None and previous.id != version.id:
        previous.status = "candidate"
        previous.status_reason = f"superseded by {version.name}" + (f" ({by})" if by else "")
        if previous.promotion_state == PROVISIONAL:
            _settle(previous, SUPERSEDED, f"{version.name} was activated before people decided")
    version.status = "active"
    version.status_reason = reason + (f" ({by})" if by and reason else by)
    version.activated_at = utcnow()
    if by and version.promotion_state is not None and version.promotion_state != CONFIRMED:
        _settle(version, CONFIRMED, f"confirmed by hand by {by}")
    db.flush()
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
    version.promotion_state, version.incumbent_version_id = PROVISIONAL, previous.id
    version.promotion_reason = (f"promoted by the training gates; awaits {rankings_needed} human rankings that "
                                f"show it beside {previous.name}")
    version.promotion_decided_at = None
    db.flush()
    return previous


def confirm_by_people(db: Session, version: ModelVersion, reason: str) -> None:
    """People's rankings confirmed a provisional version: it stays active."""
    _settle(version, CONFIRMED, reason)
    db.flush()


def roll_back_by_people(db: Session, version: ModelVersion, incumbent: ModelVersion, reason: str) -> None:
    """People preferred the incumbent: it is active again and the provisional version is rejected."""
    promote(db, incumbent, f"re-activated: people preferred it to {version.name}")
    version.status, version.status_reason = "rejected", f"rolled back to {incumbent.name} by people"
    _settle(version, ROLLED_BACK, reason)
    db.flush()


def rollback(db: Session, project_id: int, kind: str, by: str = "") -> ModelVersion:
    """Re-activate the version that was active before the current one; the current one is rejected.

    Rejected versions are never rollback targets (promote them by hand if wanted), so rolling back twice
    walks further back instead of bouncing between two versions.
    """
    current = queries.active(db, project_id, kind)
    if current is None:
        raise RegistryError(f"no active {kind} version to roll back")
    earlier = [v for v in queries.list_versions(db, project_id, kind)
               if v.id != current.id and v.activated_at is not None and v.checkpoint_path and v.status == "candidate"]
    if not earlier:
        raise RegistryError(f"no earlier {kind} version to roll back to from {current.name}")
    target = max(earlier, key=lambda v: (v.activated_at, v.id))
    promote(db, target, "rolled back", by)
    current.status, current.status_reason = "rejected", f"rolled back to {target.name}" + (f" by {by}" if by else "")
    if current.promotion_state in (PROVISIONAL, SUPERSEDED):
        _settle(current, ROLLED_BACK, f"rolled back to {target.name} by hand" + (f" by {by}" if by else ""))
    db.flush()
    return target


def abandon_job_versions(db: Session, job_id: int, reason: str) -> None:
    """A training job ended without a result: its unfinished versions are rejected with the reason."""
    for kind in KINDS:
        version = queries.by_job(db, job_id, kind)
        if version is not None and version.status == "training":
            version.status, version.status_reason = "rejected", f"training did not finish: {reason}"[:2000]
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
