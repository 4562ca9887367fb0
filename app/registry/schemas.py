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
    promotion_state: str | None = None
    promotion_reason: str = ""
    incumbent_version_id: int | None = None
    promotion_decided_at: datetime | None = None
    # "sft": trained by train_sft on demonstrations (the newest such version is the SFT reference).
    role: str | None = None
    # Names of the versions the ids above point to, and lineage counts (comparisons that trained it;
    # PPO/RLOO: the prompts its rollouts were drawn from; SFT: the demonstrations it trained on).
    parent: str | None = None
    reference_version: str | None = None
    incumbent_version: str | None = None
    comparisons: int = 0
    rollout_prompts: int = 0
    demonstrations: int = 0
    # Reward models: pairwise accuracy and calibration (ECE) on the project's fixed test set, and the
    # test-set version they were measured on (the newest one it was measured on; see metrics.test_sets).
    test_set_version: int | None = None
    test_accuracy: float | None = None
    test_ece: float | None = None
    test_pairs: int | None = None


class VersionDetailOut(VersionOut):
    comparison_ids: list[int] = Field(default_factory=list)
    rollout_prompt_ids: list[int] = Field(default_factory=list)
    demonstration_ids: list[int] = Field(default_factory=list)


class PromoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="promoted by hand", max_length=2000)


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["policy", "reward"]
