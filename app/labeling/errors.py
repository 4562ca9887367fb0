"""Labeling errors, each carrying the HTTP status the routes answer with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.errors import DomainError


class LabelingError(DomainError):
    """Base class of the labeling feature's errors; `status` is the HTTP status, the message names the problem."""

    status = 400


class NotFound(LabelingError):
    status = 404


class CapReached(LabelingError):
    """The annotator's daily cap of the project is used up (`labeling.daily_cap`)."""

    status = 429
    title = "Daily cap reached"


@dataclass(frozen=True)
class Problem:
    """One broken rule: `text` says it without ids; `completion_ids` are the completions concerned (if any)."""

    field: str
    text: str
    completion_ids: tuple[int, ...] = ()

    def message(self) -> str:
        ids = ", ".join(str(i) for i in sorted(self.completion_ids))
        return f"{self.field}: {self.text}" + (f" (completion ids {ids})" if ids else "")


class Invalid(LabelingError):
    """The submission breaks a rule (wrong ids, ranks out of range, a required field missing).

    `problems` lists every broken rule found at once, so the page can name them all next to Submit and on
    the cards concerned; the message (used by the JSON API) joins them, with ids.
    """

    status = 400

    def __init__(self, message: str = "", problems: list[Problem] | None = None) -> None:
        self.problems = list(problems or [])
        super().__init__(message or "; ".join(p.message() for p in self.problems))


class Conflict(LabelingError):
    """The task is no longer yours (lease lost) or already finished; `echo` holds what was submitted."""

    status = 409

    def __init__(self, message: str, echo: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.echo = echo


class PayloadMismatch(LabelingError):
    """The assignment already has a ranking with different content."""

    status = 422
