"""Pydantic shapes of the labeling API: the task handed out and the ranking submitted."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.web.paths import MAX_ID


def _completion_key(value: object) -> object:
    """A completion id as an object key: plain decimal digits ("177", not "177.0" or " 177"), within BIGINT."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit() and len(value) <= 19):
        raise ValueError("completion ids are whole numbers written in plain digits")
    if isinstance(value, (int, str)) and not isinstance(value, bool) and not 1 <= int(value) <= MAX_ID:
        raise ValueError(f"completion ids are between 1 and {MAX_ID}")
    return value


CompletionKey = Annotated[int, BeforeValidator(_completion_key)]


class RankingIn(BaseModel):
    """One submission. Keys of ranks/flags/likert are completion ids (JSON object keys arrive as strings)."""

    model_config = ConfigDict(extra="forbid")
    ranks: dict[CompletionKey, int] = Field(default_factory=dict, max_length=16)
    flags: dict[CompletionKey, list[str]] = Field(default_factory=dict, max_length=16)
    likert: dict[CompletionKey, int] = Field(default_factory=dict, max_length=16)
    rationale: str = Field(default="", max_length=20_000)
    # Pairwise projects only: how much better the rank-1 answer is (0 = about the same, then slightly,
    # better, much better); the ranks say which one.
    strength: int | None = Field(default=None, ge=0, le=3)
    not_rankable: bool = False
    demonstration: str | None = Field(default=None, max_length=100_000)
    wall_seconds: float | None = Field(default=None, ge=0, le=7 * 86_400)
    active_seconds: float | None = Field(default=None, ge=0, le=7 * 86_400)

    def echo(self) -> dict[str, Any]:
        """What the annotator submitted, JSON-ready (returned with a 409 so nothing typed is lost)."""
        return self.model_dump(mode="json")


class SkipIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=2000)


class PromptOut(BaseModel):
    id: int
    text: str | None = None
    messages: list[dict[str, Any]] | None = None
    system: str | None = None


class CompletionOut(BaseModel):
    id: int
    text: str
    letter: str


class TaskOut(BaseModel):
    assignment_id: int
    prompt: PromptOut
    completions: list[CompletionOut]
    lease_expires_at: datetime


class HeartbeatOut(BaseModel):
    assignment_id: int
    lease_expires_at: datetime
