"""Import pages and API: the admin upload form and `POST /api/projects/{id}/imports` (multipart `file`).

Both store the upload and answer 202 at once; the import runs on the web process's import thread
(app.imports.runner) and its page or `GET …/imports/{import_id}` shows the progress, then the report."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic import Field as PydanticField
from sqlalchemy.orm import Session

from app.auth.deps import ApiAdmin, CurrentAdmin, DbSession
from app.errors import Unprocessable
from app.imports import preview, service
from app.imports.runner import ImportRunner, Progress
from app.imports.schemas import ImportOptions, ImportOutcome, ImportProgressOut, ImportStarted, ImportStatus
from app.imports.uploads import store_upload
from app.models import ImportRecord, Project, User
from app.projects import service as projects
from app.web.paths import Id
from app.web.templating import render

router = APIRouter(tags=["imports"])


class ImportFields(BaseModel):
    """The option fields of an upload (form page and API alike); empty means "not given"."""

    # `model_column` is a field, not pydantic API (pydantic < 2.10 warns about the "model_" prefix).
    model_config = ConfigDict(protected_namespaces=())

    format: str = PydanticField("", max_length=200)
    prompt_column: str = PydanticField("", max_length=200)
    completion_column: str = PydanticField("", max_length=200)
    model_column: str = PydanticField("", max_length=200)
    id_column: str = PydanticField("", max_length=200)
    key_columns: str = PydanticField("", max_length=200)


def _options(values: dict[str, str]) -> ImportOptions:
    """The import options given; options that do not validate are Unprocessable (422), naming each problem."""
    try:
        return ImportOptions.model_validate({k: v for k, v in values.items() if v})
    except ValidationError as exc:
        raise Unprocessable(_options_error(exc)) from exc


def _options_error(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


def _runner(request: Request) -> ImportRunner:
    runner: ImportRunner = request.app.state.import_runner
    return runner


def _queue(request: Request, db: Session, project: Project, upload: UploadFile, options: ImportOptions, user: User,
           background: BackgroundTasks) -> ImportRecord:
    """Store the upload under the data directory, record the import as running and start it once the
    request's unit of work has committed that record (background tasks run after the response)."""
    runner = _runner(request)
    stored = store_upload(upload.file, runner.upload_dir)
    name = service.safe_file_name(upload.filename)
    record = service.queue_import(db, project, name, stored.sha256, service.file_format_of(name, stored.head, options),
                                  user)
    background.add_task(runner.submit, record.id, stored.path, options)
    return record


def _status(request: Request, record: ImportRecord) -> dict[str, Any]:
    """What the page shows of one import: its live progress while it runs, else its report."""
    runner = _runner(request)
    if record.status == "running":
        return {"import_record": record, "progress": runner.progress(record.id) or Progress("running"),
                "outcome": None, "groups": None}
    finished = runner.finished(record.id)
    outcome = finished.outcome if finished else service.outcome_of(record)
    groups = None if outcome.ok else preview.group_issues(outcome.issues, finished.columns if finished else [])
    return {"import_record": record, "progress": None, "outcome": outcome, "groups": groups}


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


@router.post("/projects/{project_id}/import", response_class=HTMLResponse, status_code=202)
def upload(
    request: Request,
    project_id: Id,
    db: DbSession,
    admin: CurrentAdmin,
    fields: Annotated[ImportFields, Form()],
    background: BackgroundTasks,
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Start an import: 202 with the page showing its progress, which polls itself until the report."""
    project = projects.get(db, project_id)
    values = fields.model_dump()
    if file is None or not file.filename:
        return render(request, "imports/upload.html", _page(db, project, None, "Choose a file to upload.", values),
                      status_code=400)
    try:
        options = _options(values)
    except Unprocessable as exc:  # shown on the form page again, as a 400
        return render(request, "imports/upload.html", _page(db, project, None, str(exc), values),
                      status_code=400)
    record = _queue(request, db, project, file, options, admin, background)
    return render(request, "imports/upload.html", _page(db, project, record, None, values, request),
                  status_code=202)


@router.get("/projects/{project_id}/imports/{import_id}", response_class=HTMLResponse)
def import_status_page(request: Request, project_id: Id, import_id: Id, db: DbSession,
                       _admin: CurrentAdmin) -> Response:
    """One import's progress (the htmx poll gets just that fragment) or, once finished, its report."""
    project = projects.get(db, project_id)
    record = service.get_import(db, project.id, import_id)
    return render(request, "imports/upload.html", _page(db, project, record, None, {}, request),
                  block="import_status")


def _page(
    db: Session, project: Project, record: ImportRecord | None, error: str | None, values: dict[str, str],
    request: Request | None = None,
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "project": project,
        "error": error,
        "values": values,
        "imports": service.recent_imports(db, project.id),
        "import_record": None, "progress": None, "outcome": None, "groups": None,
    }
    if record is not None and request is not None:
        context.update(_status(request, record))
    return context


@router.post("/api/projects/{project_id}/imports", status_code=202, response_model=ImportStarted)
def api_import(
    request: Request,
    project_id: Id,
    db: DbSession,
    admin: ApiAdmin,
    file: Annotated[UploadFile, File()],
    fields: Annotated[ImportFields, Form()],
    background: BackgroundTasks,
) -> JSONResponse:
    """Start importing a file: 202 at once with the import's id and status URL (poll it until `status` is
    `succeeded` or `failed`; a failed import lists every bad line and imported nothing)."""
    project = projects.get(db, project_id)
    options = _options(fields.model_dump())
    record = _queue(request, db, project, file, options, admin, background)
    url = f"/api/projects/{project.id}/imports/{record.id}"
    body = ImportStarted(import_id=record.id, status="running", file_name=record.file_name,
                         format=record.file_format, status_url=url)
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": url})


@router.get("/api/projects/{project_id}/imports/{import_id}", response_model=ImportStatus)
def api_import_status(request: Request, project_id: Id, import_id: Id, db: DbSession,
                      _admin: ApiAdmin) -> ImportStatus:
    """An import's status: `running` with its progress, else its counts or every problem found."""
    project = projects.get(db, project_id)
    shown = _status(request, service.get_import(db, project.id, import_id))
    record: ImportRecord = shown["import_record"]
    progress: Progress | None = shown["progress"]
    outcome: ImportOutcome | None = shown["outcome"]
    status = ImportStatus(import_id=record.id, status=record.status, file_name=record.file_name,
                          format=record.file_format,
                          progress=ImportProgressOut(phase=progress.phase, count=progress.count) if progress else None)
    if outcome is not None:
        status.ok = outcome.ok
        status.counts = outcome.counts
        status.error_count = outcome.issue_count
        status.errors = [issue.as_dict() for issue in outcome.issues]
        status.notes = list(outcome.notes)
        if not outcome.ok:
            status.detail = f"nothing imported: {outcome.issue_count} problem(s) in {outcome.file_name}"
    return status
