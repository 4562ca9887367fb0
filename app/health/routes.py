"""`/livez` (the process answers), `/readyz` (database reachable, schema at head), `/metrics` (Prometheus).

`/livez` and `/readyz` are open: they tell nothing but up or down. `/metrics` names routes and counts, so
outside dev it is hidden (404) until PREFLOOP_METRICS_TOKEN is set, and then wants that bearer token.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, HTTPException, Request
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


def _require_metrics_access(request: Request) -> None:
    """A set token is always required; without one the endpoint is open in dev/test and absent in prod."""
    settings = request.app.state.settings
    token: str = settings.metrics_token
    if not token:
        if settings.is_dev:
            return
        raise HTTPException(status_code=404, detail="Not Found")
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
        raise HTTPException(status_code=401, detail="Bearer token required for /metrics.",
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})


@router.get("/metrics")
def metrics(request: Request) -> Response:
    _require_metrics_access(request)
    return PlainTextResponse(generate_latest(REGISTRY).decode(), media_type="text/plain; version=0.0.4")
