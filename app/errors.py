"""The domain's error vocabulary: what went wrong, in words every layer shares.

Services, queries and route dependencies raise these; `app.web.errors` maps them once, to an error page for
browsers and to an RFC 9457 `application/problem+json` body for the API. Because the error leaves the route,
the request's unit of work rolls the transaction back. Routes never translate exceptions one by one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class DomainError(Exception):
    """Base class; `status` is the HTTP status, `title` the short, fixed name of the problem kind, and
    `headers` what the answer must carry besides (`WWW-Authenticate` on a 401, `Retry-After` on a 429)."""

    status = 400
    title = "Bad request"

    def __init__(self, *args: object, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(*args)
        self.headers: dict[str, str] = dict(headers or {})

    def problem_fields(self) -> dict[str, Any]:
        """Members the API's problem document carries besides the standard ones (none by default)."""
        return {}


class Invalid(DomainError):
    status = 400
    title = "Invalid input"


class Unauthorized(DomainError):
    """No valid credentials; API callers get the 401 (browser pages redirect to /login instead)."""

    status = 401
    title = "Unauthorized"


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class PayloadTooLarge(DomainError):
    status = 413
    title = "Payload too large"


class Unprocessable(DomainError):
    """Well-formed input the domain cannot honour (a setting out of range, a name already taken on update)."""

    status = 422
    title = "Unprocessable content"


class TooManyRequests(DomainError):
    """A budget is used up; `retry_after` (seconds), when known, is sent as the `Retry-After` header."""

    status = 429
    title = "Too many requests"

    def __init__(self, *args: object, retry_after: int | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        extra = {"Retry-After": str(max(1, retry_after))} if retry_after is not None else {}
        super().__init__(*args, headers={**(headers or {}), **extra})
