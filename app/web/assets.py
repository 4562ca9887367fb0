"""Generated static assets: the Pygments stylesheet that highlighted code in completions refers to."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from app.web.rendering import pygments_css

router = APIRouter(tags=["assets"], include_in_schema=False)


@router.get("/static-gen/highlight.css")
def highlight_css() -> Response:
    return Response(pygments_css(), media_type="text/css", headers={"Cache-Control": "public, max-age=86400"})
