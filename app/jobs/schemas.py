"""Typed payloads per job kind (validated at enqueue) and the read-only view of a job for pages and the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

JOB_KINDS = ("sample_completions", "train_reward_model", "train_policy", "score_prompts")


class JobPayloadError(ValueError):
    """A payload that does not fit its job kind; the message names the field."""


class SampleCompletionsPayload(BaseModel):
    """Sample a new round of K completions for `prompt_ids`, or for up to `limit` prompts the round plan
    chooses (app.loop.planning); `candidate_version_id` is the round's new policy, sampled beside the
    active and SFT policies (default: the active policy)."""

    model_config = ConfigDict(extra="forbid")
    prompt_ids: list[int] | None = None
    limit: int | None = Field(default=None, ge=1)
    chain: bool = False
    candidate_version_id: int | None = None


class TrainRewardModelPayload(BaseModel):
    """Train a reward model on every comparison with id <= `watermark` (fixed on the first attempt)."""

    model_config = ConfigDict(extra="forbid")
    watermark: int | None = None
    chain: bool = False
    requested_by: str = ""


class TrainPolicyPayload(BaseModel):
    """Train a policy against the active reward model; DPO reads comparisons up to `watermark`."""

    model_config = ConfigDict(extra="forbid")
    watermark: int | None = None
    chain: bool = False


class ScorePromptsPayload(BaseModel):
    """Score pending prompts' candidates with reward model `version_id` (default: the active one); see
    app.quality.scoring."""

    model_config = ConfigDict(extra="forbid")
    version_id: int | None = None
    prompt_ids: list[int] | None = None


PAYLOADS: dict[str, type[BaseModel]] = {
    "sample_completions": SampleCompletionsPayload,
    "train_reward_model": TrainRewardModelPayload,
    "train_policy": TrainPolicyPayload,
    "score_prompts": ScorePromptsPayload,
}


def validate_payload(kind: str, payload: dict[str, Any] | None) -> dict[str, Any]:
    """The payload as stored: validated against its kind's model, defaults filled in."""
    model = PAYLOADS.get(kind)
    if model is None:
        raise JobPayloadError(f"unknown job kind {kind!r} (known: {', '.join(JOB_KINDS)})")
    try:
        return model.model_validate(payload or {}).model_dump(mode="json")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise JobPayloadError(f"{kind} payload field {where}: {first['msg']}") from exc


class JobOut(BaseModel):
    """A job as the JSON API shows it."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    kind: str
    project_id: int | None
    payload: dict[str, Any]
    status: str
    attempts: int
    max_attempts: int
    scheduled_at: datetime
    worker_id: str | None
    heartbeat_at: datetime | None
    progress: float
    progress_message: str
    result: dict[str, Any] | None
    error: str | None
    cancel_requested: bool
    parent_id: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
