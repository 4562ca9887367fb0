"""Error responses: JSON for the API, a page for browsers, 503 + Retry-After while the database is down."""

from __future__ import annotations

import logging
import threading
import time
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException

from app.auth.deps import LoginRequired
from app.errors import DomainError
from app.web.templating import is_htmx_fragment_request, render

log = logging.getLogger("prefloop.errors")


class _ThrottledWarning:
    """One log line per interval during a database outage, with how many were folded into it."""

    def __init__(self, interval_s: float = 5.0) -> None:
        self.interval_s = interval_s
        self._last = float("-inf")
        self._suppressed = 0
        self._lock = threading.Lock()

    def warn(self, reason: str) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.interval_s:
                self._suppressed += 1
                return
            folded, self._suppressed, self._last = self._suppressed, 0, now
        log.warning("database unavailable (%s); answering 503 (%d similar in the last interval)", reason, folded)


_outage_log = _ThrottledWarning()


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


def error_response(request: Request, status: int, detail: object, headers: dict[str, str] | None = None,
                   title: str | None = None) -> Response:
    """A browser gets the error page; the API an RFC 9457 problem document (`detail` as before, plus
    `type`, `title` and `status`)."""
    if _wants_json(request):
        problem = {"type": "about:blank", "title": title or HTTPStatus(status).phrase, "status": status,
                   "detail": detail}
        return JSONResponse(problem, status_code=status, headers=headers, media_type="application/problem+json")
    message = detail if isinstance(detail, str) else "The request could not be processed."
    response = render(request, "error.html", {"status": status, "message": message}, status_code=status)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers; no stack trace ever reaches a client."""

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, _exc: LoginRequired) -> Response:
        if _wants_json(request):
            return error_response(request, 401, "Authentication required.")
        target = "/login?next=" + request.url.path
        if is_htmx_fragment_request(request):
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> Response:
        return error_response(request, exc.status, str(exc) or exc.title, title=exc.title)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        return error_response(request, exc.status_code, exc.detail, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        if _wants_json(request):
            return error_response(request, 422, errors, title="Invalid input")
        text = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}" for e in errors)
        return error_response(request, 422, f"Invalid input — {text}")

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    async def _database_down(request: Request, exc: Exception) -> Response:
        if isinstance(exc, DBAPIError) and not exc.connection_invalidated and not isinstance(exc, OperationalError):
            log.exception("database error")
            return error_response(request, 500, "Internal error; it has been logged.")
        _outage_log.warn(type(exc).__name__)
        return error_response(
            request, 503, "The database is unavailable; retry shortly.", headers={"Retry-After": "2"}
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "Internal error; it has been logged.")
