"""`/livez` (the process answers), `/readyz` (database reachable, schema at head), `/metrics` (Prometheus)
and `/openapi.json` (the API's schema).

`/livez` and `/readyz` are open: they tell nothing but up or down. `/metrics` and `/openapi.json` name every
route, so outside dev only admins get them (app.auth.deps.require_operator), and `/metrics` also answers
PREFLOOP_METRICS_TOKEN as a bearer token (for Prometheus). A metrics token set in dev is required there too.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from app.auth.deps import require_operator
from app.health.collectors import DatabaseCollector
from app.health.readiness import database_at_head
from app.settings import prometheus_multiproc_dir
from app.web.metrics import exposition

router = APIRouter(tags=["health"])


@router.get("/livez")
def livez() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> Response:
    engine = request.app.state.engine
    try:
        at_head = database_at_head(engine)
    except SQLAlchemyError as exc:
        return JSONResponse({"status": "unavailable", "database": type(exc).__name__}, status_code=503)
    if not at_head:
        return JSONResponse({"status": "migrations pending", "hint": "run `prefloop db upgrade`"}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/metrics")
def metrics(request: Request) -> Response:
    token: str = request.app.state.settings.metrics_token
    require_operator(request, open_in_dev=not token, scraper_token=token)
    body = exposition(DatabaseCollector(request.app.state.session_factory), prometheus_multiproc_dir())
    return PlainTextResponse(body.decode(), media_type="text/plain; version=0.0.4")


@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request) -> dict[str, Any]:
    require_operator(request, open_in_dev=True)
    schema: dict[str, Any] = request.app.openapi()
    return schema
