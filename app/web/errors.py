"""Error responses: JSON for the API, a page for browsers, 503 + Retry-After while the database is down,
500 with a request id (logged with the traceback) for every fault."""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from app.auth.deps import LoginRequired
from app.errors import DomainError
from app.web.db_errors import is_transient
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
# A request id a proxy already assigned is reused when it is a plain token; anything else gets a fresh one.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_id(request: Request) -> str:
    """The id that ties a 500 answer to its logged traceback: the caller's X-Request-ID, else a new one."""
    bound = getattr(request.state, "request_id", None)  # app.logs.RequestIdMiddleware: the id its log lines carry
    if bound:
        return str(bound)
    given = request.headers.get("x-request-id", "")
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]


def _fault(request: Request, what: str, exc: BaseException) -> Response:
    """Log the exception and its traceback with a request id; answer 500 naming that id (never the traceback)."""
    rid = request_id(request)
    log.error("%s on %s %s (request id %s)", what, request.method, request.url.path, rid, exc_info=exc,
              extra={"request_id": rid})
    return error_response(request, 500, f"Internal error; it has been logged (request id {rid}).",
                          headers={"X-Request-ID": rid})


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


def error_response(request: Request, status: int, detail: object, headers: dict[str, str] | None = None,
                   title: str | None = None, errors: list[dict[str, Any]] | None = None,
                   extra: dict[str, Any] | None = None) -> Response:
    """A browser gets the error page; the API an RFC 9457 problem document: `type`, `title`, `status`, and
    `detail` — always a string, as RFC 9457 has it — plus, for invalid input, `errors` (one entry per problem:
    `loc`, `msg`, `type`), the shape the OpenAPI schema documents (see `document_problems`), and the `extra`
    members a domain error adds (`DomainError.problem_fields`)."""
    if _wants_json(request):
        problem: dict[str, Any] = {"type": "about:blank", "title": title or HTTPStatus(status).phrase,
                                   "status": status, "detail": detail if isinstance(detail, str) else str(detail)}
        if errors is not None:
            problem["errors"] = errors
        problem.update(extra or {})
        return JSONResponse(problem, status_code=status, headers=headers, media_type="application/problem+json")
    message = detail if isinstance(detail, str) else "The request could not be processed."
    response = render(request, "error.html", {"status": status, "message": message}, status_code=status)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers, and document what they send; no stack trace ever reaches a client."""
    document_problems(app)

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
        return error_response(request, exc.status, str(exc) or exc.title, exc.headers or None, title=exc.title,
                              extra=exc.problem_fields())

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        return error_response(request, exc.status_code, exc.detail, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        text = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}" for e in errors)
        return error_response(request, 422, f"Invalid input — {text}", title="Invalid input", errors=errors)

    @app.exception_handler(DBAPIError)
    async def _database_error(request: Request, exc: DBAPIError) -> Response:
        # Only an unreachable or busy database is an outage; a statement it refuses is a fault (app.web.db_errors).
        if not is_transient(exc):
            return _fault(request, "database error", exc)
        _outage_log.warn(type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__)
        return error_response(
            request, 503, "The database is unavailable; retry shortly.", headers={"Retry-After": "2"}
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        return _fault(request, "unhandled error", exc)


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "An RFC 9457 problem document; `errors` lists each problem of invalid input (422).",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}


def document_problems(app: FastAPI) -> None:
    """Publish the error shape the handlers above send: FastAPI documents every 422 as its own
    `HTTPValidationError` (`detail` a list, as application/json); here each 422 is the Problem document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()  # FastAPI caches it on app.openapi_schema; it is changed in place below
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        components["Problem"] = PROBLEM_SCHEMA
        for operation in (op for item in schema.get("paths", {}).values() for op in item.values()):
            response = operation.get("responses", {}).get("422") if isinstance(operation, dict) else None
            if response is not None:
                response["content"] = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
