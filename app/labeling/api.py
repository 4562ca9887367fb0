"""JSON API of the ranking workflow (Bearer token or session + CSRF header): next task, submit, skip, heartbeat."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from app.auth.deps import ApiUser, DbSession
from app.labeling import service
from app.labeling.errors import Invalid, LabelingError
from app.labeling.schemas import HeartbeatOut, RankingIn, SkipIn, TaskOut
from app.web.errors import error_response
from app.web.paths import Id

router = APIRouter(prefix="/api", tags=["labeling"])


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
    return dict(pairs)


async def ranking_body(request: Request) -> RankingIn:
    """Parse the ranking JSON; every malformed ranking is a 400 naming the problem (duplicate ids included)."""
    try:
        raw = json.loads(await request.body(), object_pairs_hook=_no_duplicate_keys)
        data = RankingIn.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise Invalid(f"{where}: {first['msg']}") from exc
    except ValueError as exc:
        raise Invalid(f"invalid JSON body: {exc}") from exc
    for field in ("ranks", "flags", "likert"):
        keys = list((raw.get(field) or {}).keys()) if isinstance(raw, dict) else []
        if len({int(k) for k in keys}) != len(keys):
            raise Invalid(f"{field}: a completion id appears twice")
    return data


def _error(request: Request, exc: LabelingError) -> Response:
    """The problem document app.web.errors makes of every domain error (with the echoed ranking on a 409),
    answered rather than raised: what the service wrote before refusing (a lease it found expired) is
    committed, as on the ranking pages."""
    return error_response(request, exc.status, str(exc) or exc.title, exc.headers or None, title=exc.title,
                          extra=exc.problem_fields())


@router.get(
    "/projects/{project_id}/tasks/next",
    response_model=TaskOut,
    responses={204: {"description": "nothing left"}},
)
def next_task(request: Request, project_id: Id, db: DbSession, user: ApiUser) -> Response | TaskOut:
    try:
        _project, task = service.claim_next(db, project_id, user)
    except LabelingError as exc:
        return _error(request, exc)
    if task is None:
        return Response(status_code=204)
    return service.task_out(task)


@router.post("/assignments/{assignment_id}/ranking")
def submit_ranking(
    assignment_id: Id,
    request: Request,
    db: DbSession,
    user: ApiUser,
    data: Annotated[RankingIn, Depends(ranking_body)],
) -> Response:
    client = {"user_agent": request.headers.get("user-agent", "")[:300], "via": "api"}
    try:
        return JSONResponse(service.submit(db, user, assignment_id, data, client))
    except LabelingError as exc:
        return _error(request, exc)


@router.put("/assignments/{assignment_id}/ranking")
def revise_ranking(
    request: Request,
    assignment_id: Id,
    db: DbSession,
    user: ApiUser,
    data: Annotated[RankingIn, Depends(ranking_body)],
) -> Response:
    """Change the annotator's last submitted ranking within the project's edit window: stored as its next
    version (the old one kept), comparisons regenerated; 409 after the window or once it trained a model."""
    try:
        return JSONResponse(service.revise(db, user, assignment_id, data))
    except LabelingError as exc:
        return _error(request, exc)


@router.post("/assignments/{assignment_id}/skip")
def skip(request: Request, assignment_id: Id, body: SkipIn, db: DbSession, user: ApiUser) -> Response:
    try:
        row = service.skip(db, user, assignment_id, body.reason)
    except LabelingError as exc:
        return _error(request, exc)
    return JSONResponse({"assignment_id": row.id, "status": row.status})


@router.post("/assignments/{assignment_id}/heartbeat", response_model=HeartbeatOut)
def heartbeat(request: Request, assignment_id: Id, db: DbSession, user: ApiUser) -> Response | HeartbeatOut:
    try:
        expires = service.heartbeat(db, user, assignment_id)
    except LabelingError as exc:
        return _error(request, exc)
    return HeartbeatOut(assignment_id=assignment_id, lease_expires_at=expires)
