"""Model pages and JSON: versions with metrics and lineage, promote and roll back by hand."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth.deps import ApiAdmin, CurrentAdmin, DbSession
from app.demonstrations import service as demonstrations
from app.loop import promotion
from app.loop import service as loop
from app.models import ModelVersion, Project
from app.projects import service as projects
from app.registry import service as registry
from app.registry.schemas import PromoteIn, RollbackIn, VersionDetailOut, VersionOut
from app.web.paths import Id
from app.web.templating import render

router = APIRouter(tags=["models"])
_PLOT_W, _PLOT_H = 480, 120


def _version(db: DbSession, project: Project, version_id: int) -> ModelVersion:
    return registry.get(db, version_id, project.id)


def _plot(series: list[float]) -> str:
    """SVG polyline points for a metric history (drawn with SVG attributes: no inline style under the CSP)."""
    values = [v for v in series if isinstance(v, int | float)]
    if len(values) < 2:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    step = _PLOT_W / (len(values) - 1)
    return " ".join(f"{i * step:.1f},{_PLOT_H - (v - lo) / span * _PLOT_H:.1f}" for i, v in enumerate(values))


def _plots(version: ModelVersion) -> list[dict[str, Any]]:
    history = version.metrics.get("history") or []
    curves: dict[str, list[float]] = {}
    if version.kind == "reward" and version.metrics.get("loss_curve"):
        curves["loss"] = list(version.metrics["loss_curve"])
    for key in ("reward_mean", "reward", "kl", "loss", "dpo_loss"):
        series = [h[key] for h in history if isinstance(h, dict) and key in h]
        if series and key not in curves:
            curves[key] = series
    return [{"name": k, "points": _plot(v), "min": min(v), "max": max(v), "last": v[-1]}
            for k, v in curves.items() if _plot(v)]


@router.get("/projects/{project_id}/models", response_class=HTMLResponse)
def models_page(request: Request, project_id: Id, db: DbSession, _admin: CurrentAdmin,
                error: str | None = None) -> Response:
    project = projects.get(db, project_id)
    versions = registry.list_versions(db, project.id)
    counts = registry.lineage_counts(db, [v.id for v in versions])
    return render(request, "registry/list.html", {
        "project": project, "counts": counts, "error": error,
        "demonstrations": demonstrations.lineage_counts(db, [v.id for v in versions]),
        "policies": [v for v in versions if v.kind == "policy"],
        "rewards": [v for v in versions if v.kind == "reward"],
        "settings": projects.settings_of(project),
        "standings": promotion.standings(db, project), "awaiting": promotion.awaiting(db, project),
    })


@router.get("/projects/{project_id}/models/{version_id}", response_class=HTMLResponse)
def version_page(request: Request, project_id: Id, version_id: Id, db: DbSession, _admin: CurrentAdmin) -> Response:
    project = projects.get(db, project_id)
    version = _version(db, project, version_id)
    lineage = registry.lineage(db, version.id)
    parent = registry.find(db, version.parent_id) if version.parent_id else None
    return render(request, "registry/detail.html", {
        "project": project, "version": version, "parent": parent, "lineage": lineage[:500],
        "demonstration_ids": demonstrations.lineage(db, version.id),
        "lineage_total": len(lineage), "plots": _plots(version), "plot_w": _PLOT_W, "plot_h": _PLOT_H,
    })


@router.post("/projects/{project_id}/models/{version_id}/promote")
def promote_form(project_id: Id, version_id: Id, db: DbSession, admin: CurrentAdmin) -> Response:
    project = projects.get(db, project_id)
    registry.promote(db, _version(db, project, version_id), "promoted by hand", by=admin.email)
    return RedirectResponse(f"/projects/{project.id}/models", status_code=303)


@router.post("/projects/{project_id}/models/rollback")
def rollback_form(project_id: Id, db: DbSession, admin: CurrentAdmin,
                  kind: Annotated[str, Form(pattern="^(policy|reward)$")]) -> Response:
    project = projects.get(db, project_id)
    registry.rollback(db, project.id, kind, by=admin.email)
    return RedirectResponse(f"/projects/{project.id}/models", status_code=303)


# --- JSON -------------------------------------------------------------------------------------------------


def _out(db: DbSession, version: ModelVersion) -> VersionOut:
    return loop.version_views(db, [version])[0]


@router.get("/api/projects/{project_id}/models", response_model=list[VersionOut])
def api_models(project_id: Id, db: DbSession, _admin: ApiAdmin, kind: str | None = None) -> list[VersionOut]:
    if kind is not None and kind not in registry.KINDS:
        raise HTTPException(status_code=400, detail="kind must be policy or reward")
    return loop.version_views(db, registry.list_versions(db, projects.get(db, project_id).id, kind))


@router.get("/api/projects/{project_id}/models/{version_id}", response_model=VersionDetailOut)
def api_model(project_id: Id, version_id: Id, db: DbSession, _admin: ApiAdmin) -> VersionDetailOut:
    version = _version(db, projects.get(db, project_id), version_id)
    ids = registry.lineage(db, version.id)
    out = VersionDetailOut.model_validate(_out(db, version).model_dump())
    out.comparison_ids = ids
    out.rollout_prompt_ids = loop.rollout_prompts(db, version.id)
    out.rollout_prompts = len(out.rollout_prompt_ids)
    out.demonstration_ids = demonstrations.lineage(db, version.id)
    return out


@router.get("/api/projects/{project_id}/comparisons/{comparison_id}/models", response_model=list[VersionOut])
def api_trained_by(project_id: Id, comparison_id: Id, db: DbSession, _admin: ApiAdmin) -> list[VersionOut]:
    """Which checkpoints this comparison trained."""
    project = projects.get(db, project_id)
    return loop.version_views(db, [v for v in registry.trained_by(db, comparison_id) if v.project_id == project.id])


@router.post("/api/projects/{project_id}/models/{version_id}/promote", response_model=VersionOut)
def api_promote(project_id: Id, version_id: Id, body: PromoteIn, db: DbSession, admin: ApiAdmin) -> VersionOut:
    version = _version(db, projects.get(db, project_id), version_id)
    registry.promote(db, version, body.reason, by=admin.email)
    return _out(db, version)


@router.post("/api/projects/{project_id}/models/rollback", response_model=VersionOut)
def api_rollback(project_id: Id, body: RollbackIn, db: DbSession, admin: ApiAdmin) -> VersionOut:
    project = projects.get(db, project_id)
    return _out(db, registry.rollback(db, project.id, body.kind, by=admin.email))
