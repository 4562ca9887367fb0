"""Labeling errors, each carrying the HTTP status the routes answer with."""

from __future__ import annotations

from typing import Any


class LabelingError(Exception):
    """Base class; `status` is the HTTP status, the message names the problem."""

    status = 400


class NotFound(LabelingError):
    status = 404


class Invalid(LabelingError):
    """The submission breaks a rule (wrong ids, ranks out of range, a required field missing)."""

    status = 400


class Conflict(LabelingError):
    """The task is no longer yours (lease lost) or already finished; `echo` holds what was submitted."""

    status = 409

    def __init__(self, message: str, echo: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.echo = echo


class PayloadMismatch(LabelingError):
    """The assignment already has a ranking with different content."""

    status = 422
