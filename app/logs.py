"""Process logging: one JSON object per line in production, readable lines in dev, and the request id.

The request id lives in a context variable: the web middleware (`RequestIdMiddleware`) sets it for each
request, the job queue copies it into the payload of jobs enqueued during that request, and the worker
binds it again while it runs such a job, so one id follows a click from the web log into the worker log.
Structured fields go in `extra={...}`; they become JSON keys (or `key=value` pairs in text). Never put
passwords, tokens or secrets in them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
# An id a proxy already assigned is reused when it is a short plain token; anything else gets a fresh one,
# so a caller cannot inject spaces, quotes or newlines into every log line of its request.
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_request_id: ContextVar[str | None] = ContextVar("prefloop_request_id", default=None)
# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged as a field.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}
_HANDLER_MARK = "_prefloop_handler"
# Where each record keeps the request id bound when it was made (any handler may format it later, elsewhere).
_STAMP = "_prefloop_request_id"


def safe_request_id(given: str | None) -> str | None:
    """`given` when it is a short safe token (letters, digits, `.`, `_`, `-`; at most 64), else None."""
    return given if given and _SAFE_ID.fullmatch(given) else None


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def current_request_id() -> str | None:
    """The request id bound to this context (a web request or a job the worker runs), or None."""
    return _request_id.get()


@contextlib.contextmanager
def bound_request_id(request_id: str | None) -> Iterator[None]:
    """Bind `request_id` for the code inside (the worker does this around each job)."""
    token = _request_id.set(safe_request_id(request_id))
    try:
        yield
    finally:
        _request_id.reset(token)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in record.__dict__.items() if key not in _STANDARD and not key.startswith("_")}


def _record_request_id(record: logging.LogRecord) -> str | None:
    """An explicit `extra={"request_id": …}` first, else the id bound when the record was made."""
    given = record.__dict__.get("request_id") or record.__dict__.get(_STAMP)
    return str(given) if given else None


def record_request_id(record: logging.LogRecord) -> str | None:
    """The request id a log record carries (for tests and for handlers that format records themselves)."""
    return _record_request_id(record)


def _install_record_stamp() -> None:
    """Wrap the log record factory once so every record remembers the request id bound where it was made."""
    base = logging.getLogRecordFactory()
    if getattr(base, _STAMP, False):
        return

    def stamped(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        setattr(record, _STAMP, _request_id.get())
        return record

    setattr(stamped, _STAMP, True)
    logging.setLogRecordFactory(stamped)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": _record_request_id(record),
        }
        for key, value in _fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [request id] message key=value …` for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(rid)s: %(message)s%(fields)s")

    def format(self, record: logging.LogRecord) -> str:
        rid = _record_request_id(record)
        fields = {key: value for key, value in _fields(record).items() if key not in ("rid", "fields", "request_id")}
        record.rid = f" [{rid}]" if rid else ""
        record.fields = "".join(f" {key}={value}" for key, value in fields.items())
        try:
            return super().format(record)
        finally:
            record.__dict__.pop("rid", None)
            record.__dict__.pop("fields", None)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever `sys.stderr` is now (test runners swap it), like logging's last-resort handler."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def resolve_format(log_format: str, is_dev: bool) -> Literal["json", "text"]:
    """`json` or `text`; `auto` means text in dev/test and JSON in production."""
    if log_format in ("json", "text"):
        return log_format  # type: ignore[return-value]
    return "text" if is_dev else "json"


def configure_logging(level: str, log_format: Literal["json", "text"]) -> None:
    """Send log records to stderr in `log_format`; `prefloop.*` loggers at `level`.

    Idempotent: a second call (every `create_app` does one) replaces the handler it installed before and
    leaves handlers that others installed (uvicorn's own, a test's capture) alone.
    """
    _install_record_stamp()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = _StderrHandler()
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root.addHandler(handler)
    logging.getLogger("prefloop").setLevel(level.upper())


class RequestIdMiddleware:
    """Binds a request id for each HTTP request and answers it in `X-Request-ID`.

    The caller's `X-Request-ID` is kept when it is a safe token, else a new id is made. The id is also put
    on `request.state.request_id`, for the error handlers that run outside this middleware.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-request-id"), None)
        rid = safe_request_id(given) or new_request_id()
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                if REQUEST_ID_HEADER not in headers:
                    headers.append(REQUEST_ID_HEADER, rid)
            await send(message)

        token = _request_id.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request_id.reset(token)


_install_record_stamp()  # at import too: records made before configure_logging (tests, the CLI) carry the id
