"""Pydantic shapes of the labeling API: the task handed out and the ranking submitted."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RankingIn(BaseModel):
    """One submission. Keys of ranks/flags/likert are completion ids (JSON object keys arrive as strings)."""

    model_config = ConfigDict(extra="forbid")
    ranks: dict[int, int] = Field(default_factory=dict, max_length=16)
    flags: dict[int, list[str]] = Field(default_factory=dict, max_length=16)
    likert: dict[int, int] = Field(default_factory=dict, max_length=16)
    rationale: str = Field(default="", max_length=20_000)
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
