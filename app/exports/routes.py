"""Export page and downloads: `/projects/{id}/export` (admin form), its download, and `GET /api/projects/{id}/export`.

Downloads stream: the generator opens its own connection and snapshot, because the request's session is
committed and closed before the response body is sent.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from app.auth.deps import ApiAdmin, CurrentAdmin, DbSession
from app.exports import service
from app.exports.schemas import (
    EXTENSIONS,
    FORMATS,
    KINDS,
    MEDIA_TYPES,
    ExportOptions,
    ExportQuery,
)
from app.models import Project
from app.projects.deps import PathProject
from app.web.templating import render

router = APIRouter(tags=["exports"])


def _download(request: Request, db: Session, project: Project, query: ExportQuery) -> StreamingResponse:
    model_version = query.model_version
    if model_version and not model_version.strip().isdigit():
        raise service.ExportError("model_version must be a model version id")
    version = int(model_version) if model_version else None
    filters = service.resolve_filters(db, project.id, query.since, query.annotator, version,
                                      humans_only=query.humans_only, trained_version=query.trained_version)
    engine = request.app.state.engine
    kind, fmt = query.kind, query.format
    options = ExportOptions(margin_column=query.margin_column, flatten_chat=query.flatten_chat)
    service.ensure_exportable(engine, project.id, kind, fmt, options, filters)  # before the first byte is sent
    body = service.stream_export(engine, project.id, kind, fmt, filters, options)
    file_name = f"prefloop-project-{project.id}-{kind}.{EXTENSIONS[fmt]}"
    logging.getLogger("prefloop.exports").info("export of project %s served: %s as %s", project.id, kind, fmt, extra={
        "event": "export.served", "project_id": project.id, "export_kind": kind, "format": fmt})
    return StreamingResponse(
        body,
        media_type=MEDIA_TYPES[fmt],
        headers={
            "Content-Disposition": f'attachment; filename="{file_name}"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/projects/{project_id}/export", response_class=HTMLResponse)
def export_page(request: Request, _admin: CurrentAdmin, project: PathProject) -> Response:
    return render(request, "exports/page.html", {"project": project, "kinds": KINDS, "formats": FORMATS})


@router.get("/projects/{project_id}/export/download")
def export_download(request: Request, db: DbSession, _admin: CurrentAdmin, project: PathProject,
                    query: Annotated[ExportQuery, Query()]) -> StreamingResponse:
    return _download(request, db, project, query)


@router.get("/api/projects/{project_id}/export")
def api_export(request: Request, db: DbSession, _admin: ApiAdmin, project: PathProject,
               query: Annotated[ExportQuery, Query()]) -> StreamingResponse:
    """Stream one export (kind × format) of the project, from one snapshot."""
    return _download(request, db, project, query)
