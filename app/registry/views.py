"""What the model pages show, built from a version and its lineage: sentences for status and promotion,
charts of the training curves and calibration, a compact table of the headline metrics, lineage as counts
with links into the data browser, and the raw JSON only for a collapsed "details" box."""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup
from sqlalchemy.orm import Session

from app.demonstrations import service as demonstrations
from app.jobs import queue
from app.loop import promotion
from app.loop import service as loop
from app.models import ModelVersion, Project
from app.models.enums import JobStatus, VersionKind, VersionStatus
from app.projects import service as projects
from app.registry import charts
from app.registry import service as registry

STATUS_WORDS = {
    "active": "In use", "candidate": "Not in use", "rejected": "Rejected", "training": "Still training",
}
PROMOTION_WORDS = {
    "provisional": "Provisional", "confirmed": "Confirmed", "rolled_back": "Rolled back",
    "superseded": "Superseded",
}
POLICY_CURVES = (
    (("reward_mean", "reward"), "Mean reward per step"),
    (("kl",), "KL to the reference per step"),
    (("policy_loss", "loss", "sft_loss"), "Training loss per step"),
    (("accuracy",), "Preference accuracy per step"),
)


@dataclass(frozen=True)
class Link:
    """A count in words and, where the data browser can list those rows, where."""

    text: str
    href: str | None = None


@dataclass
class VersionPage:
    charts: list[tuple[str, Markup]] = field(default_factory=list)  # (caption, SVG)
    facts: list[tuple[str, str]] = field(default_factory=list)
    lineage: list[Link] = field(default_factory=list)
    metrics_json: str = "{}"
    config_json: str = "{}"


def _clause(text: str) -> str:
    """A reason as the end of a sentence: trimmed, with a full stop."""
    text = text.strip()
    return text if not text or text.endswith((".", "!", "?")) else text + "."


def status_sentence(version: ModelVersion) -> str:
    """The status and its reason as one sentence ("Rejected: mean reward did not improve (0.17 → 0.16).")."""
    word = STATUS_WORDS.get(version.status, version.status)
    reason = (version.status_reason or "").strip()
    return f"{word}: {_clause(reason)}" if reason else f"{word}."


def promotion_sentence(version: ModelVersion) -> str:
    """The promotion-by-people state and its reason as one sentence, or "" when there is none."""
    if not version.promotion_state:
        return ""
    word = PROMOTION_WORDS.get(version.promotion_state, version.promotion_state.replace("_", " "))
    reason = (version.promotion_reason or "").strip()
    return f"{word}: {_clause(reason)}" if reason else f"{word}."


def fmt(value: Any, digits: int = 3) -> str:
    """A metric for people: floats rounded, NaN and missing as a dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 10 ** -digits or value == 0 else f"{value:.2e}"
    return str(value)


def _numbers(values: Any) -> list[float]:
    if not isinstance(values, list):
        return []
    return [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]


def _series(rows: Any, keys: Sequence[str]) -> list[float]:
    if not isinstance(rows, list):
        return []
    for key in keys:
        values = _numbers([r.get(key) for r in rows if isinstance(r, dict) and key in r])
        if values:
            return values
    return []


def _captioned(svg: Markup) -> tuple[str, Markup]:
    caption = re.search(r"<title>(.*?)</title>", str(svg))
    return (html.unescape(caption.group(1)) if caption else "", svg)


def _reward_charts(m: Mapping[str, Any]) -> list[Markup]:
    out = [charts.curve_svg("Training loss per step", [("loss", _numbers(m.get("loss_curve")))])]
    curve = (m.get("validation") or {}).get("curve") or []
    if curve:
        out.append(charts.curve_svg("Validation loss per evaluation", [
            ("loss", _series(curve, ("loss",))), ("calibrated loss", _series(curve, ("calibrated_loss",)))],
            x_label="evaluation"))
        out.append(charts.curve_svg("Validation accuracy per evaluation", [("accuracy", _series(curve, ("accuracy",)))],
                                    x_label="evaluation"))
    bins = ((m.get("heldout") or {}).get("calibration") or {}).get("bins")
    if isinstance(bins, list):
        out.append(charts.reliability_svg([b for b in bins if isinstance(b, dict)]))
    return out


def _policy_charts(m: Mapping[str, Any]) -> list[Markup]:
    history = m.get("history") or []
    out = []
    for keys, title in POLICY_CURVES:
        values = _series(history, keys)
        if values:
            out.append(charts.curve_svg(title, [(keys[0].replace("_", " "), values)]))
    return out


def _ci(value: Any) -> str:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
        return f" (95 % interval {value[0]:.3f}–{value[1]:.3f})"
    return ""


def _reward_facts(m: Mapping[str, Any]) -> list[tuple[str, str]]:
    heldout = m.get("heldout") or {}
    calibration = heldout.get("calibration") or {}
    facts = [
        ("held-out accuracy", fmt(m.get("heldout_accuracy")) + _ci(heldout.get("accuracy_ci95"))),
        ("active model on the same pairs", fmt(m.get("active_heldout_accuracy"))),
        ("test-set accuracy", f"{fmt(m.get('test_accuracy'))} on {m.get('test_pairs', 0)} pair(s) of test set "
                              f"v{m.get('test_set_version', '—')}"),
        ("calibration error (ECE)", fmt(m.get("test_ece", calibration.get("ece")))),
        ("length-only baseline", fmt((heldout.get("length_baseline") or {}).get("accuracy"))),
        ("training accuracy", fmt(m.get("train_accuracy"))),
        ("final training loss", fmt(m.get("final_train_loss"))),
        ("comparisons · training pairs", f"{fmt(m.get('comparisons'))} · {fmt(m.get('train_pairs'))}"),
        ("steps", f"{fmt(m.get('steps'))} of {fmt(m.get('total_steps'))}"),
    ]
    return facts + _run_facts(m)


def _run_facts(m: Mapping[str, Any]) -> list[tuple[str, str]]:
    facts = []
    if isinstance(m.get("train_seconds", m.get("seconds")), int | float):
        facts.append(("training time", f"{float(m.get('train_seconds', m.get('seconds'))):.1f} s"))
    if m.get("device"):
        facts.append(("device", f"{m['device']}" + (f" × {m['world_size']}" if m.get("world_size", 1) != 1 else "")))
    if m.get("resumed_from_step"):
        facts.append(("resumed from step", fmt(m["resumed_from_step"])))
    return facts


def _policy_facts(version: ModelVersion, m: Mapping[str, Any]) -> list[tuple[str, str]]:
    if version.role == "sft" or "sft_loss_after" in m:
        return [("SFT loss before → after", f"{fmt(m.get('sft_loss_before'))} → {fmt(m.get('sft_loss_after'))}"),
                ("steps", fmt(m.get("steps"))), *_run_facts(m)]
    return [
        ("algorithm", fmt(m.get("algorithm"))),
        ("mean reward before → after", f"{fmt(m.get('reward_before'))} → {fmt(m.get('reward_after'))}"),
        ("KL to the reference", f"{fmt(m.get('kl', m.get('kl_to_reference')))}"
                                + (f" (reference {m['reference_version']})" if m.get("reference_version") else "")),
        ("scored by", fmt(m.get("reward_version"))),
        ("training · held-out prompts", f"{fmt(m.get('train_prompts'))} · {fmt(m.get('heldout_prompts'))}"),
        ("steps", fmt(m.get("steps"))),
        *_run_facts(m),
    ]


def _lineage(db: Session, version: ModelVersion) -> list[Link]:
    base = f"/projects/{version.project_id}/data"
    comparisons, rankings, prompts = registry.lineage_summary(db, version.id)
    out = []
    if comparisons:
        out.append(Link(f"{comparisons} comparison(s) trained this checkpoint"
                        + (f", from {rankings} ranking(s)" if rankings else " (imported, no ranking)"),
                        f"{base}/rankings?trained_by={version.id}" if rankings else None))
        out.append(Link(f"{prompts} prompt(s) behind them", f"{base}/prompts?trained_by={version.id}"))
    rollouts = len(loop.rollout_prompts(db, version.id))
    if rollouts:
        out.append(Link(f"{rollouts} prompt(s) used for its training rollouts", f"{base}/prompts?trained_by={version.id}"))
    shown = len(demonstrations.lineage(db, version.id))
    if shown:
        out.append(Link(f"{shown} demonstration(s) trained this checkpoint"))
    written = registry.completions_written(db, version.id)
    if written:
        out.append(Link(f"{written} completion(s) written by this version", f"{base}/prompts?model_version={version.id}"))
        out.append(Link("rankings that showed them", f"{base}/rankings?model_version={version.id}"))
    if not out:
        out.append(Link("No training data and no completions recorded for this version yet."))
    return out


def _json(value: Any) -> str:
    return json.dumps(value or {}, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def version_page(db: Session, version: ModelVersion) -> VersionPage:
    """Everything the version page shows besides the version's own columns."""
    m = version.metrics or {}
    if version.kind == VersionKind.REWARD:
        chart_list, facts = _reward_charts(m), _reward_facts(m)
    else:
        chart_list, facts = _policy_charts(m), _policy_facts(version, m)
    return VersionPage(charts=[_captioned(c) for c in chart_list], facts=[f for f in facts if f[1].strip("—· →of") != ""] if m else [],
                       lineage=_lineage(db, version), metrics_json=_json(m), config_json=_json(version.training_config))


def rollback_targets(versions: Sequence[ModelVersion]) -> dict[str, ModelVersion | None]:
    """Per kind, the version "Roll back" would re-activate (None: the button is not offered)."""
    return {kind: registry.rollback_target([v for v in versions if v.kind == kind]) for kind in registry.KINDS}


def models_context(db: Session, project: Project) -> dict[str, Any]:
    """What the models page and its live fragment show: leaderboard, versions by kind, lineage counts,
    rollback targets, and whether anything is training (the fragment polls faster then)."""
    versions = registry.list_versions(db, project.id)
    ids = [v.id for v in versions]
    busy = any(v.status == VersionStatus.TRAINING for v in versions) or bool(
        queue.list_jobs(db, project_id=project.id, statuses=[JobStatus.QUEUED, JobStatus.RUNNING], limit=1))
    return {
        "project": project, "counts": registry.lineage_counts(db, ids),
        "demonstrations": demonstrations.lineage_counts(db, ids),
        "policies": [v for v in versions if v.kind == VersionKind.POLICY],
        "rewards": [v for v in versions if v.kind == VersionKind.REWARD],
        "targets": rollback_targets(versions), "busy": busy,
        "settings": projects.settings_of(project),
        "standings": promotion.standings(db, project), "awaiting": promotion.awaiting(db, project),
        "status_sentence": status_sentence, "promotion_sentence": promotion_sentence,
    }


def version_context(db: Session, project: Project, version: ModelVersion) -> dict[str, Any]:
    """What the version page shows."""
    parent = registry.find(db, version.parent_id) if version.parent_id else None
    return {"project": project, "version": version, "parent": parent, "view": version_page(db, version),
            "status_sentence": status_sentence, "promotion_sentence": promotion_sentence}
