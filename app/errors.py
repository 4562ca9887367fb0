"""The domain's error vocabulary: what went wrong, in words every layer shares.

Services and queries raise these; `app.web.errors` maps them once, to an error page for browsers and to an
RFC 9457 `application/problem+json` body for the API. Because the error leaves the route, the request's
unit of work rolls the transaction back. Routes never translate exceptions one by one.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base class; `status` is the HTTP status and `title` the short, fixed name of the problem kind."""

    status = 400
    title = "Bad request"


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class Invalid(DomainError):
    status = 400
    title = "Invalid input"
