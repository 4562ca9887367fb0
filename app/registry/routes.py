"""Model pages and JSON: versions with metrics and lineage, promote and roll back by hand."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth.deps import ApiAdmin, CurrentAdmin, DbSession
from app.demonstrations import service as demonstrations
from app.errors import Invalid
from app.loop import service as loop
from app.models import ModelVersion
from app.projects.deps import PathProject
from app.registry import service as registry
from app.registry import views
from app.registry.schemas import PromoteIn, RollbackIn, VersionDetailOut, VersionOut
from app.web.paths import Id
from app.web.templating import render

router = APIRouter(tags=["models"])


def path_version(version_id: Id, db: DbSession, project: PathProject) -> ModelVersion:
    """The model version of the path's `{version_id}` in the path's project (404 otherwise)."""
    return registry.get(db, version_id, project.id)


PathVersion = Annotated[ModelVersion, Depends(path_version)]


@router.get("/projects/{project_id}/models", response_class=HTMLResponse)
def models_page(request: Request, db: DbSession, _admin: CurrentAdmin, project: PathProject,
                error: str | None = None) -> Response:
    return render(request, "registry/list.html", {**views.models_context(db, project), "error": error})


@router.get("/projects/{project_id}/models/live", response_class=HTMLResponse)
def models_live(request: Request, db: DbSession, _admin: CurrentAdmin, project: PathProject) -> Response:
    """The models page's live part (leaderboard and version tables), which polls itself."""
    return render(request, "registry/_versions.html", views.models_context(db, project))


@router.get("/projects/{project_id}/models/{version_id}", response_class=HTMLResponse)
def version_page(request: Request, db: DbSession, _admin: CurrentAdmin, project: PathProject,
                 version: PathVersion) -> Response:
    return render(request, "registry/detail.html", views.version_context(db, project, version))


@router.post("/projects/{project_id}/models/{version_id}/promote")
def promote_form(db: DbSession, admin: CurrentAdmin, project: PathProject, version: PathVersion) -> Response:
    registry.promote(db, version, "promoted by hand", by=admin.email)
    return RedirectResponse(f"/projects/{project.id}/models", status_code=303)


@router.post("/projects/{project_id}/models/rollback")
def rollback_form(db: DbSession, admin: CurrentAdmin, project: PathProject,
                  kind: Annotated[str, Form(pattern="^(policy|reward)$")]) -> Response:
    registry.rollback(db, project.id, kind, by=admin.email)
    return RedirectResponse(f"/projects/{project.id}/models", status_code=303)


# --- JSON -------------------------------------------------------------------------------------------------


def _out(db: DbSession, version: ModelVersion) -> VersionOut:
    return loop.version_views(db, [version])[0]


@router.get("/api/projects/{project_id}/models", response_model=list[VersionOut])
def api_models(db: DbSession, _admin: ApiAdmin, project: PathProject, kind: str | None = None) -> list[VersionOut]:
    if kind is not None and kind not in registry.KINDS:
        raise Invalid("kind must be policy or reward")
    return loop.version_views(db, registry.list_versions(db, project.id, kind))


@router.get("/api/projects/{project_id}/models/{version_id}", response_model=VersionDetailOut)
def api_model(db: DbSession, _admin: ApiAdmin, version: PathVersion) -> VersionDetailOut:
    ids = registry.lineage(db, version.id)
    out = VersionDetailOut.model_validate(_out(db, version).model_dump())
    out.comparison_ids = ids
    out.rollout_prompt_ids = loop.rollout_prompts(db, version.id)
    out.rollout_prompts = len(out.rollout_prompt_ids)
    out.demonstration_ids = demonstrations.lineage(db, version.id)
    return out


@router.get("/api/projects/{project_id}/comparisons/{comparison_id}/models", response_model=list[VersionOut])
def api_trained_by(comparison_id: Id, db: DbSession, _admin: ApiAdmin, project: PathProject) -> list[VersionOut]:
    """Which checkpoints this comparison trained."""
    return loop.version_views(db, [v for v in registry.trained_by(db, comparison_id) if v.project_id == project.id])


@router.post("/api/projects/{project_id}/models/{version_id}/promote", response_model=VersionOut)
def api_promote(body: PromoteIn, db: DbSession, admin: ApiAdmin, version: PathVersion) -> VersionOut:
    registry.promote(db, version, body.reason, by=admin.email)
    return _out(db, version)


@router.post("/api/projects/{project_id}/models/rollback", response_model=VersionOut)
def api_rollback(body: RollbackIn, db: DbSession, admin: ApiAdmin, project: PathProject) -> VersionOut:
    return _out(db, registry.rollback(db, project.id, body.kind, by=admin.email))
