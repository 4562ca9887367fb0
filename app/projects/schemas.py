"""Pydantic shapes of a project and of its settings JSON (sampling, training, labeling, schedule, quality)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

AiRankings = Literal["exclude", "llm-judge"]
"""Which AI rankings (source 'ai') train the reward model and DPO; see `TrainingSettings.ai_rankings`."""

DEFAULT_FLAGS = (
    "fails to follow the instruction",
    "hallucination / makes things up",
    "harmful or toxic",
    "refuses without reason",
    "inappropriate for a customer assistant",
)


class SamplingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(default=1.0, ge=0.0, le=5.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    max_new_tokens: int = Field(default=64, ge=1, le=8192)
    seed: int = 0
    k: int | None = Field(default=None, ge=2, le=16, description="completions per prompt; default k_max")
    # Versions side by side (app.loop.planning.policy_mix): of a task's K candidates, `from_active` come
    # from the active policy and `from_sft` from the SFT version, the rest from the round's new candidate
    # policy (at least one); roles that are the same version pool their share.
    from_active: int = Field(default=1, ge=0, le=16, description="candidates per task from the active policy")
    from_sft: int = Field(default=1, ge=0, le=16, description="candidates per task from the SFT version")


class TrainingSettings(BaseModel):
    """How the worker trains the reward model and the policy.

    `ai_rankings` chooses the training data of the reward model and of DPO: "exclude" (default) uses human
    and imported rankings only; "llm-judge" adds AI rankings made by an LLM judge (`prefloop ai-annotate
    --endpoint`, i.e. RLAIF). AI rankings made by the reward-model ranker (`--reward-model`) are never used:
    they are the active reward model's own scores, so training the next one on them is circular (it learns
    its own outputs and reinforces its errors).
    """

    model_config = ConfigDict(extra="forbid")
    policy_model: str = ""
    reward_model: str = ""
    algorithm: Literal["ppo", "rloo", "dpo"] = "ppo"
    rm_epochs: int = Field(default=1, ge=1, le=100)
    rm_lr: float = Field(default=1e-5, gt=0)
    rm_batch_prompts: int = Field(default=8, ge=1)
    rm_heldout_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    rm_accuracy_tolerance: float = Field(default=0.01, ge=0.0, le=1.0)
    rm_share_prefix: bool = Field(default=False, description="forward each prompt once per ranking group "
                                  "(decoder reward models; same result, faster on long prompts)")
    ai_rankings: AiRankings = Field(default="exclude", description="AI rankings in RM/DPO training data: "
                                    "'exclude' (human + imported only) or 'llm-judge' (also LLM-judge ones; "
                                    "reward-model-ranked ones never)")
    policy_lr: float = Field(default=1e-5, gt=0)
    policy_steps: int = Field(default=20, ge=1)
    policy_batch_prompts: int = Field(default=8, ge=1, le=1024,
                                      description="prompts per PPO/RLOO step; ranking groups per DPO step")
    rloo_k: int = Field(default=4, ge=2, le=64, description="RLOO samples per prompt (leave-one-out baseline)")
    kl_beta: float = Field(default=0.02, ge=0.0)
    dpo_beta: float = Field(default=0.1, gt=0.0)
    kl_budget: float = Field(default=10.0, gt=0.0)
    reference: Literal["sft", "previous"] = Field(
        default="sft", description="the frozen KL reference of PPO/RLOO: the SFT version (InstructGPT) or "
        "the round's starting policy")


class ScheduleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    retrain_every: int = Field(default=200, ge=1, description="new comparisons that trigger retraining")
    prompts_per_round: int = Field(default=50, ge=1)
    # Round planning (app.loop.planning.choose_prompts): never-ranked prompts first, then up to
    # `uncertain_share` of the round by reward-model uncertainty, then the least recently sampled.
    resample: bool = Field(default=True, description="choose already-ranked prompts again for new candidates")
    uncertain_share: float = Field(default=0.5, ge=0.0, le=1.0,
                                   description="at most this share of a round chosen by RM uncertainty")


class LabelingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    flags: list[str] = Field(default_factory=lambda: list(DEFAULT_FLAGS), max_length=30)
    likert_enabled: bool = True
    likert_required: bool = False
    rationale_required: bool = False
    flags_required: bool = False
    demonstrations: bool = False
    layout: Literal["stacked", "side-by-side"] = "stacked"


class QualitySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gold_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    gold_threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    pause_below_threshold: bool = False
    active_selection: bool = False
    show_rm_suggestion: bool = False


class ProjectSettings(BaseModel):
    """The typed view of `projects.settings`; unknown keys are refused so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    labeling: LabelingSettings = Field(default_factory=LabelingSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    guidelines: str = Field(default="", max_length=100_000)
    k_min: int = Field(default=4, ge=2, le=16)
    k_max: int = Field(default=9, ge=2, le=16)
    annotations_per_prompt: int = Field(default=1, ge=1, le=100)
    lease_minutes: int = Field(default=30, ge=1, le=24 * 60)
    allow_fewer_than_k_min: bool = False
    settings: ProjectSettings = Field(default_factory=ProjectSettings)

    @model_validator(mode="after")
    def _k_range(self) -> ProjectCreate:
        if self.k_max < self.k_min:
            raise ValueError(f"k_max ({self.k_max}) must be at least k_min ({self.k_min})")
        return self


class ProjectUpdate(BaseModel):
    """A partial update (`PATCH /api/projects/{id}`); settings sections merge key by key."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    guidelines: str | None = Field(default=None, max_length=100_000)
    k_min: int | None = Field(default=None, ge=2, le=16)
    k_max: int | None = Field(default=None, ge=2, le=16)
    annotations_per_prompt: int | None = Field(default=None, ge=1, le=100)
    lease_minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    allow_fewer_than_k_min: bool | None = None
    archived: bool | None = None
    settings: dict[str, dict[str, object]] | None = None


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    guidelines: str
    k_min: int
    k_max: int
    annotations_per_prompt: int
    lease_minutes: int
    allow_fewer_than_k_min: bool
    settings: ProjectSettings
    created_at: datetime
    archived_at: datetime | None
