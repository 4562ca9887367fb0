"""`/livez` (the process answers), `/readyz` (database reachable, schema at head), `/metrics` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.migrate import is_at_head
from app.web.metrics import REGISTRY

router = APIRouter(tags=["health"])


@router.get("/livez")
def livez() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> Response:
    engine = request.app.state.engine
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        at_head = is_at_head(engine)
    except SQLAlchemyError as exc:
        return JSONResponse({"status": "unavailable", "database": type(exc).__name__}, status_code=503)
    if not at_head:
        return JSONResponse({"status": "migrations pending", "hint": "run `prefloop db upgrade`"}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/metrics")
def metrics() -> Response:
    return PlainTextResponse(generate_latest(REGISTRY).decode(), media_type="text/plain; version=0.0.4")
