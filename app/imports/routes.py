"""Import pages and API: the admin upload form and `POST /api/projects/{id}/imports` (multipart `file`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ValidationError
from pydantic import Field as PydanticField
from sqlalchemy.orm import Session

from app.auth.deps import ApiAdmin, CurrentAdmin, DbSession
from app.imports import preview, service
from app.imports.schemas import ImportOptions, ImportOutcome
from app.imports.service import run_import
from app.models import Project, User
from app.projects import service as projects
from app.web.paths import Id
from app.web.templating import render

router = APIRouter(tags=["imports"])


class ImportFields(BaseModel):
    """The option fields of an upload (form page and API alike); empty means "not given"."""

    format: str = PydanticField("", max_length=200)
    prompt_column: str = PydanticField("", max_length=200)
    completion_column: str = PydanticField("", max_length=200)
    model_column: str = PydanticField("", max_length=200)
    id_column: str = PydanticField("", max_length=200)
    key_columns: str = PydanticField("", max_length=200)


def _options(values: dict[str, str]) -> ImportOptions:
    return ImportOptions.model_validate({k: v for k, v in values.items() if v})


def _options_error(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


def _import(db: Session, project: Project, upload: UploadFile, options: ImportOptions, user: User) -> ImportOutcome:
    # The upload is already spooled (to disk past 1 MB) by the multipart parser; parse it from there.
    return run_import(db, project, upload.file, upload.filename, options, user)


@router.get("/projects/{project_id}/import", response_class=HTMLResponse)
def import_page(request: Request, project_id: Id, db: DbSession, _admin: CurrentAdmin) -> Response:
    project = projects.get(db, project_id)
    return render(request, "imports/upload.html", _page(db, project, None, None, {}))


@router.post("/projects/{project_id}/import/preview", response_class=HTMLResponse)
async def upload_preview(
    request: Request,
    project_id: Id,
    _admin: CurrentAdmin,
    file: Annotated[UploadFile, File()],
) -> Response:
    """The first rows of the chosen file and a guessed column mapping (the page sends the file's first bytes)."""
    head = await file.read(preview.PREVIEW_BYTES)
    shown = await run_in_threadpool(preview.preview, head, service.safe_file_name(file.filename))
    return render(request, "imports/_preview.html", {"preview": shown, "project_id": project_id})


@router.post("/projects/{project_id}/import", response_class=HTMLResponse)
def upload(
    request: Request,
    project_id: Id,
    db: DbSession,
    admin: CurrentAdmin,
    fields: Annotated[ImportFields, Form()],
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    project = projects.get(db, project_id)
    values = fields.model_dump()
    if file is None or not file.filename:
        return render(request, "imports/upload.html", _page(db, project, None, "Choose a file to upload.", values),
                      status_code=400)
    try:
        options = _options(values)
    except ValidationError as exc:
        return render(request, "imports/upload.html", _page(db, project, None, _options_error(exc), values),
                      status_code=400)
    outcome = _import(db, project, file, options, admin)
    status = 200 if outcome.ok else 400
    context = _page(db, project, outcome, None, values)
    if not outcome.ok:
        file.file.seek(0)
        columns = preview.preview(file.file.read(preview.PREVIEW_BYTES), outcome.file_name).columns
        context["groups"] = preview.group_issues(outcome.issues, columns)
    return render(request, "imports/upload.html", context, status_code=status)


def _page(
    db: Session, project: Project, outcome: ImportOutcome | None, error: str | None, values: dict[str, str]
) -> dict[str, Any]:
    # Flush so a failed import's record shows in the history below its own report.
    db.flush()
    return {
        "project": project,
        "outcome": outcome,
        "error": error,
        "values": values,
        "imports": service.recent_imports(db, project.id),
    }


@router.post("/api/projects/{project_id}/imports")
def api_import(
    project_id: Id,
    db: DbSession,
    admin: ApiAdmin,
    file: Annotated[UploadFile, File()],
    fields: Annotated[ImportFields, Form()],
) -> JSONResponse:
    """Import a file; 201 with the counts, or 422 listing every bad line (nothing imported)."""
    project = projects.get(db, project_id)
    try:
        options = _options(fields.model_dump())
    except ValidationError as exc:
        raise HTTPException(status_code=422, detail=_options_error(exc)) from exc
    outcome = _import(db, project, file, options, admin)
    body = outcome.as_dict()
    if not outcome.ok:
        body["detail"] = f"nothing imported: {outcome.issue_count} problem(s) in {outcome.file_name}"
        return JSONResponse(body, status_code=422)
    return JSONResponse(body, status_code=201)
