"""Typed payloads per job kind (validated at enqueue) and the read-only view of a job for pages and the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.models.enums import JobKind


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
    """Train a reward model on every comparison with id <= `watermark` and measure it on the project's
    test set version `test_set_version` (both fixed on the first attempt)."""

    model_config = ConfigDict(extra="forbid")
    watermark: int | None = None
    test_set_version: int | None = None
    chain: bool = False
    requested_by: str = ""


class TrainPolicyPayload(BaseModel):
    """Train a policy against the active reward model; DPO reads comparisons up to `watermark`."""

    model_config = ConfigDict(extra="forbid")
    watermark: int | None = None
    chain: bool = False


class TrainSftPayload(BaseModel):
    """Train the SFT version: the base policy on every demonstration with id <= `watermark` (fixed on the
    first attempt); `chain`: the loop's round continues when it succeeds (app.loop.chain)."""

    model_config = ConfigDict(extra="forbid")
    watermark: int | None = None
    chain: bool = False
    requested_by: str = ""


class ScorePromptsPayload(BaseModel):
    """Score pending prompts' candidates with reward model `version_id` (default: the active one); see
    app.quality.scoring."""

    model_config = ConfigDict(extra="forbid")
    version_id: int | None = None
    prompt_ids: list[int] | None = None


PAYLOADS: dict[str, type[BaseModel]] = {
    JobKind.SAMPLE_COMPLETIONS: SampleCompletionsPayload,
    JobKind.TRAIN_REWARD_MODEL: TrainRewardModelPayload,
    JobKind.TRAIN_POLICY: TrainPolicyPayload,
    JobKind.SCORE_PROMPTS: ScorePromptsPayload,
    JobKind.TRAIN_SFT: TrainSftPayload,
}


# The id of the web request that enqueued a job (app.logs), kept beside the kind's fields for the worker's log.
REQUEST_ID_KEY = "request_id"


def validate_payload(kind: str, payload: dict[str, Any] | None) -> dict[str, Any]:
    """The payload as stored: validated against its kind's model, defaults filled in, plus `request_id`."""
    model = PAYLOADS.get(kind)
    if model is None:
        raise JobPayloadError(f"unknown job kind {kind!r} (known: {', '.join(JobKind)})")
    fields, request_id = split_request_id(payload)
    try:
        data = model.model_validate(fields).model_dump(mode="json")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise JobPayloadError(f"{kind} payload field {where}: {first['msg']}") from exc
    if request_id:
        data[REQUEST_ID_KEY] = request_id
    return data


def split_request_id(payload: dict[str, Any] | None) -> tuple[dict[str, Any], str | None]:
    """(the kind's own fields, the request id) of a stored payload; handlers validate only the first."""
    fields = dict(payload or {})
    given = fields.pop(REQUEST_ID_KEY, None)
    return fields, (str(given)[:64] if given else None)


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


class AwaitingOut(BaseModel):
    """A provisional policy version and the human rankings it still needs (app.loop.promotion)."""

    version_id: int
    version: str
    incumbent_version_id: int | None
    incumbent_version: str | None
    rankings: int
    rankings_needed: int
    remaining: int


class LoopStatusOut(BaseModel):
    """Where the loop stands (`GET /api/projects/{id}/loop`); `waiting_for` says in words what it waits for."""

    enabled: bool
    retrain_every: int
    prompts_per_round: int
    interval_minutes: int
    next_interval_at: datetime | None
    new_comparisons: int
    prompts_without_completions: int
    eligible_prompts: int
    open_slots: int
    demonstrations: int = 0
    sft_due: bool = False
    awaiting: AwaitingOut | None
    waiting_for: list[str]
    active_jobs: list[JobOut]

    @classmethod
    def of(cls, loop: Any) -> LoopStatusOut:
        """From an app.scheduler.service.LoopStatus."""
        wait = loop.awaiting
        awaiting = None if wait is None else AwaitingOut(
            version_id=wait.version.id, version=wait.version.name,
            incumbent_version_id=wait.incumbent.id if wait.incumbent is not None else None,
            incumbent_version=wait.incumbent.name if wait.incumbent is not None else None,
            rankings=wait.have, rankings_needed=wait.need, remaining=wait.remaining)
        return cls(enabled=loop.enabled, retrain_every=loop.retrain_every, prompts_per_round=loop.prompts_per_round,
                   interval_minutes=loop.interval_minutes, next_interval_at=loop.next_interval_at,
                   new_comparisons=loop.new_comparisons, prompts_without_completions=loop.prompts_without_completions,
                   eligible_prompts=loop.eligible_prompts, open_slots=loop.open_slots,
                   demonstrations=loop.demonstrations, sft_due=loop.sft_due, awaiting=awaiting,
                   waiting_for=list(loop.waiting_for), active_jobs=[JobOut.model_validate(j) for j in loop.active_jobs])
