"""Labeling errors: the shared vocabulary (app.errors) under one base class, so the labeling pages can catch
every refusal of a submission at once; status and title come from the shared kind each one is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app import errors
from app.errors import DomainError


class LabelingError(DomainError):
    """Base class of the labeling feature's errors (a 400 unless a shared kind says otherwise); the message
    names the problem."""


class NotFound(LabelingError, errors.NotFound):
    """No such project open for labeling, or no such assignment of this annotator."""


class CapReached(LabelingError, errors.TooManyRequests):
    """The annotator's daily cap of the project is used up (`labeling.daily_cap`)."""

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


class Invalid(LabelingError, errors.Invalid):
    """The submission breaks a rule (wrong ids, ranks out of range, a required field missing).

    `problems` lists every broken rule found at once, so the page can name them all next to Submit and on
    the cards concerned; the message (used by the JSON API) joins them, with ids.
    """

    def __init__(self, message: str = "", problems: list[Problem] | None = None) -> None:
        self.problems = list(problems or [])
        super().__init__(message or "; ".join(p.message() for p in self.problems))


class Conflict(LabelingError, errors.Conflict):
    """The task is no longer yours (lease lost) or already finished; `echo` holds what was submitted."""

    def __init__(self, message: str, echo: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.echo = echo

    def problem_fields(self) -> dict[str, Any]:
        """The API's 409 echoes the refused ranking, so a client loses nothing it sent."""
        return {"ranking": self.echo} if self.echo is not None else {}


class PayloadMismatch(LabelingError, errors.Unprocessable):
    """The assignment already has a ranking with different content."""
