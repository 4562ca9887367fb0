"""Pages and htmx fragments from one template: a full page normally, just the named block for htmx requests."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response
from jinja2_fragments.fastapi import Jinja2Blocks

from app.paths import TEMPLATE_DIR
from app.web.csrf import csrf_token, ensure_cookie
from app.web.rendering import render_markdown, render_plain


def create_templates() -> Jinja2Blocks:
    """The Jinja environment: autoescape on, markdown filters that sanitise, no access to Python internals."""
    templates = Jinja2Blocks(directory=str(TEMPLATE_DIR))
    env = templates.env
    env.autoescape = True
    env.filters["markdown"] = render_markdown
    env.filters["plain"] = render_plain
    return templates


def is_htmx_fragment_request(request: Request) -> bool:
    """An htmx swap (not a history restore, which needs the full page)."""
    return request.headers.get("hx-request") == "true" and request.headers.get("hx-history-restore-request") != "true"


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    block: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """Render `template` (or only `block` for an htmx swap), with the user, CSRF token and settings in scope."""
    templates: Jinja2Blocks = request.app.state.templates
    ctx: dict[str, Any] = {
        "request": request,
        "current_user": getattr(request.state, "viewer", None),
        "csrf_token": csrf_token(request),
        "dev_mode": request.app.state.settings.is_dev,
    }
    ctx.update(context or {})
    fragment = block if block and is_htmx_fragment_request(request) else None
    response = templates.TemplateResponse(
        request, template, ctx, block_name=fragment, status_code=status_code, headers=headers
    )
    response.headers["Vary"] = "HX-Request"
    response.headers.setdefault("Cache-Control", "no-store")
    ensure_cookie(request, response)
    return response
