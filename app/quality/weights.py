"""Trust weights into the database: rankings.weight and the weight of each ranking's comparisons.

`recompute_trust_weights` is what the admin action and the worker's train_reward_model handler call
(before reading the training snapshot, so the reward model trains on the current weights). The
exports' `weight` column and the reward-model training input (app.registry.datasets reads
rankings.weight per group, comparisons.weight for loose pairs) then carry them. Imported pairs are not
assessed and keep their weight. Never commits.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.models import Project
from app.quality import queries, service


@dataclass(frozen=True)
class WeightsResult:
    """What a recompute changed: rankings weighed, how many changed, and the weight range."""

    rankings: int
    changed: int
    min_weight: float | None
    max_weight: float | None

    def to_dict(self) -> dict[str, float | int | None]:
        return {"rankings": self.rankings, "changed": self.changed,
                "min_weight": self.min_weight, "max_weight": self.max_weight}


def recompute_trust_weights(db: Session, project: Project) -> WeightsResult:
    """Compute trust weights from all current rankings (fresh, not cached) and store them."""
    # No leaderboard bootstrap: the weights do not depend on it, and the worker calls this before training.
    quality = service.compute(db, project, n_bootstrap=0)
    weights = {int(rid): float(w) for rid, w in quality.report.ranking_weights.items() if isinstance(rid, int)}
    before = queries.stored_weights(db, project.id)
    changed = {rid: w for rid, w in weights.items() if abs(before.get(rid, 1.0) - w) > 1e-12}
    queries.store_ranking_weights(db, project.id, changed)
    service.invalidate(project.id)
    values = list(weights.values())
    return WeightsResult(len(weights), len(changed), min(values) if values else None, max(values) if values else None)


def recompute_for_project_id(db: Session, project_id: int) -> WeightsResult:
    """The same, by project id (a convenience for the worker, which holds ids in job payloads)."""
    project = db.get(Project, project_id)
    if project is None:
        raise LookupError(f"project {project_id} not found")
    return recompute_trust_weights(db, project)
