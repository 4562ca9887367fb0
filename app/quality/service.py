"""A project's quality report from the database, cached in process, plus the views built on it
(the JSON API payload, the consensus browser, the plots' data tables, the consensus export rows).

Caching: no table. The report is recomputed on demand and kept in a per-process dict keyed by project,
valid while (a) the inputs' fingerprint (count and max id of rankings, gold prompts and model
versions, plus the quality settings) is unchanged and (b) it is younger than `CACHE_TTL_SECONDS`
(which bounds staleness from edits the fingerprint cannot see, e.g. a rewritten gold spec, or from
another process). Writers in this package call `invalidate`. Never commits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.models import ModelVersion, Project, Prompt, utcnow
from app.projects.service import settings_of
from app.quality import queries
from app.quality.stats.consensus import Consensus, consensus_subset
from app.quality.stats.records import RankingRecord
from app.quality.stats.report import QualityReport, compute_quality
from app.registry.service import latest_test_score

CACHE_TTL_SECONDS = 60.0
GOLD_MIN_ITEMS = 5


@dataclass
class ProjectQuality:
    """Everything the dashboard and API show for one project, computed together."""

    project_id: int
    report: QualityReport
    records: list[RankingRecord]
    names: dict[Any, str]
    reward_models: list[dict[str, Any]]
    computed_at: datetime
    pause_enabled: bool
    _consensus: dict[Any, Consensus] | None = field(default=None, repr=False)

    @property
    def consensus(self) -> dict[Any, Consensus]:
        """Consensus of every regular (non-gold) prompt with >= 2 human rankings, trust-weighted."""
        if self._consensus is None:
            regular = [r for r in self.records if not r.is_gold]
            self._consensus = consensus_subset(regular, self.report.ranking_weights)
        return self._consensus

    def annotator_rows(self) -> list[dict[str, Any]]:
        """The report's annotator rows with display names and the pause state, most rankings first."""
        rows = []
        for a in self.report.annotators:
            rows.append({
                **a,
                "name": self.names.get(a["id"], str(a["id"])),
                "paused": bool(self.pause_enabled and a.get("gold_flagged")),
            })
        return sorted(rows, key=lambda r: (-r["rankings"], str(r["name"])))

    def to_dict(self) -> dict[str, Any]:
        """The JSON API payload (see docs/quality.md)."""
        out = self.report.to_dict()
        names = {a["id"]: a for a in self.annotator_rows()}
        out["annotators"] = [names.get(a["id"], a) for a in out["annotators"]]
        out["reward_models"] = self.reward_models
        out["computed_at"] = self.computed_at.isoformat()
        return out


def heldout_accuracy(metrics: dict[str, Any] | None) -> float | None:
    """A reward model's held-out pairwise accuracy from model_versions.metrics.

    Read from `heldout_accuracy`, else `heldout.accuracy`, else `accuracy` (the shapes the training
    handler may write); None when absent or not a finite number.
    """
    m = metrics or {}
    candidates = [m.get("heldout_accuracy"), (m.get("heldout") or {}).get("accuracy")
                  if isinstance(m.get("heldout"), dict) else None, m.get("accuracy")]
    for v in candidates:
        if isinstance(v, int | float) and not isinstance(v, bool) and v == v and abs(v) != float("inf"):
            return float(v)
    return None


def _reward_model_row(v: ModelVersion) -> dict[str, Any]:
    """A reward-model version's row: its held-out accuracy as trained, and its accuracy and calibration
    (ECE) on the fixed test set, with the test-set version that was measured on (the newest one)."""
    score = latest_test_score(v.metrics) or {}
    return {
        "id": v.id,
        "name": v.name,
        "status": v.status,
        "heldout_accuracy": heldout_accuracy(v.metrics),
        "test_set_version": score.get("test_set_version"),
        "test_accuracy": score.get("accuracy"),
        "test_ece": score.get("ece"),
        "test_pairs": score.get("n_pairs"),
        "created_at": v.created_at.isoformat() if v.created_at else None,
    }


def compute(db: Session, project: Project, *, n_bootstrap: int = 200) -> ProjectQuality:
    """Load the project's rankings and gold specs and compute every measure (no cache)."""
    cfg = settings_of(project).quality
    records = queries.load_records(db, project.id)
    report = compute_quality(
        records,
        queries.gold_specs(db, project.id),
        n_bootstrap=n_bootstrap,
        seed=project.id,
        gold_threshold=cfg.gold_threshold,
        gold_min_items=GOLD_MIN_ITEMS,
    )
    people = queries.users(db, (a["id"] for a in report.annotators))
    names = {uid: u.display_name for uid, u in people.items()}
    return ProjectQuality(
        project_id=project.id,
        report=report,
        records=records,
        names=names,
        reward_models=[_reward_model_row(v) for v in queries.reward_versions(db, project.id)],
        computed_at=utcnow(),
        pause_enabled=cfg.pause_below_threshold,
    )


_cache: dict[int, tuple[tuple[Any, ...], float, ProjectQuality]] = {}
_lock = threading.Lock()


def invalidate(project_id: int | None = None) -> None:
    """Drop the cached report of one project (or of all)."""
    with _lock:
        if project_id is None:
            _cache.clear()
        else:
            _cache.pop(project_id, None)


def get_quality(db: Session, project: Project, *, fresh: bool = False) -> ProjectQuality:
    """The project's quality, from the cache when still valid (see the module docstring)."""
    # created_at tells apart a project that reuses a deleted one's id (SQLite reuses ids).
    key = (project.created_at, queries.fingerprint(db, project.id), settings_of(project).quality.model_dump_json())
    now = time.monotonic()
    if not fresh:
        with _lock:
            hit = _cache.get(project.id)
        if hit is not None and hit[0] == key and now - hit[1] < CACHE_TTL_SECONDS:
            return hit[2]
    result = compute(db, project)
    with _lock:
        _cache[project.id] = (key, now, result)
    return result


# --- views ----------------------------------------------------------------------------------


def agreement_rows(q: ProjectQuality) -> list[dict[str, Any]]:
    """Agreement per UTC day (the agreement-over-time plot and its CSV)."""
    return [
        {"day": d.isoformat(), **s.to_dict()} for d, s in q.report.agreement_by_day.items()
    ]


def leaderboard_rows(q: ProjectQuality) -> list[dict[str, Any]]:
    return [r.to_dict() for r in q.report.leaderboard]


def reward_model_rows(q: ProjectQuality) -> list[dict[str, Any]]:
    return list(q.reward_models)


def annotator_csv_rows(q: ProjectQuality) -> list[dict[str, Any]]:
    keys = ("id", "name", "is_ai", "rankings", "median_seconds", "trust", "trust_ci_low", "trust_ci_high",
            "weight", "gold_accuracy", "gold_items", "gold_flagged", "paused", "position_bias",
            "position_bias_p", "length_rank_corr", "too_fast")
    return [{k: r.get(k) for k in keys} for r in q.annotator_rows()]


@dataclass(frozen=True)
class ConsensusView:
    """One prompt in the consensus browser: the consensus and every human ranking beside it."""

    prompt_id: int
    prompt_text: str
    letters: dict[int, str]
    texts: dict[int, str]
    order: list[int]
    bradley_terry: dict[int, float]
    rankings: list[dict[str, Any]]


def _int(x: Any) -> int:
    """A database id held as a generic record id."""
    return int(x)


def _prompt_text(p: Any) -> str:
    if p.text:
        return str(p.text)
    return "\n".join(str(m.get("content", "")) for m in (p.messages or []))


def consensus_page(db: Session, q: ProjectQuality, page: int = 1, per_page: int = 10) -> tuple[list[ConsensusView], int]:
    """One page of the consensus browser (prompts by id) and the number of pages."""
    ids = sorted(q.consensus, key=_int)
    pages = max(1, -(-len(ids) // per_page))
    page = min(max(1, page), pages)
    chosen = [_int(p) for p in ids[(page - 1) * per_page : page * per_page]]
    prompts = queries.prompts(db, chosen)
    comps = queries.completions_of(db, chosen)
    by_prompt: dict[int, list[RankingRecord]] = {}
    for r in q.records:
        if not r.is_ai and not r.is_gold and r.prompt_id in prompts:
            by_prompt.setdefault(_int(r.prompt_id), []).append(r)
    views = []
    for pid in chosen:
        c = q.consensus[pid]
        letters = {cc.id: chr(ord("A") + i) for i, cc in enumerate(comps.get(pid, []))}
        views.append(ConsensusView(
            prompt_id=pid,
            prompt_text=_prompt_text(prompts[pid]) if pid in prompts else "",
            letters=letters,
            texts={cc.id: cc.text for cc in comps.get(pid, [])},
            order=[_int(x) for x in c.order],
            bradley_terry={_int(k): v for k, v in c.bradley_terry.items()},
            rankings=[
                {"annotator": q.names.get(r.annotator_id, str(r.annotator_id)),
                 "order": [_int(x) for x in sorted(r.ranks, key=lambda cid: (r.ranks[cid], str(cid)))],
                 "ranks": {_int(k): v for k, v in r.ranks.items()},
                 "weight": q.report.ranking_weights.get(r.ranking_id)}
                for r in by_prompt.get(pid, [])
            ],
        ))
    return views, pages


def consensus_export_rows(
    db: Session, project: Project, shape_prompt: Callable[[Prompt], Any] | None = None, batch: int = 200
) -> Iterator[dict[str, Any]]:
    """Rows of the `consensus` export: one per regular prompt with >= 2 human rankings.

    Columns: prompt_id, external_id, prompt (`shape_prompt(prompt)`, default its text), completions
    (texts in consensus order, best first), completion_ids, consensus_ranks (1..n, aligned),
    bt_scores (Bradley-Terry log-strengths, aligned), n_rankings.
    """
    shape = shape_prompt or _prompt_text
    q = get_quality(db, project)
    ids = sorted(_int(p) for p in q.consensus)
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        prompts = queries.prompts(db, chunk)
        comps = queries.completions_of(db, chunk)
        for pid in chunk:
            c = q.consensus[pid]
            text = {cc.id: cc.text for cc in comps.get(pid, [])}
            order = [_int(x) for x in c.order]
            p = prompts.get(pid)
            if p is None:
                continue
            yield {
                "prompt_id": pid,
                "external_id": p.external_id,
                "prompt": shape(p),
                "completions": [text.get(cid, "") for cid in order],
                "completion_ids": order,
                "consensus_ranks": list(range(1, len(order) + 1)),
                "bt_scores": [round(float(c.bradley_terry.get(cid, 0.0)), 6) for cid in order],
                "n_rankings": c.n_rankings,
            }
