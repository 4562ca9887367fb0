"""JSON shapes of model versions and their lineage."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class VersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    project_id: int
    kind: str
    name: str
    base_model: str
    checkpoint_path: str | None
    parent_id: int | None
    reference_version_id: int | None = None
    reward_version_id: int | None = None
    status: str
    status_reason: str
    metrics: dict[str, Any]
    training_config: dict[str, Any]
    data_watermark: int | None
    data_snapshot_hash: str | None
    job_id: int | None
    created_at: datetime
    activated_at: datetime | None
    comparisons: int = 0
    rollout_prompts: int = 0


class VersionDetailOut(VersionOut):
    comparison_ids: list[int] = Field(default_factory=list)
    rollout_prompt_ids: list[int] = Field(default_factory=list)


class PromoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="promoted by hand", max_length=2000)


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["policy", "reward"]
