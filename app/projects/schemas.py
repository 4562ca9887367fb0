"""Pydantic shapes of a project and of its settings JSON (sampling, training, labeling, schedule, quality)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

AiRankings = Literal["exclude", "llm-judge"]
"""Which AI rankings (source 'ai') train the reward model and DPO: `AI_RANKINGS_POLICY`."""

AI_RANKINGS_POLICY = (
    "AI rankings in RM/DPO training data: 'exclude' (the default: human and imported rankings only) or "
    "'llm-judge' (also the rankings of an LLM judge, prefloop ai-annotate --endpoint, i.e. RLAIF). Rankings "
    "made by the reward-model ranker (--reward-model) never train: they are the active reward model's own "
    "scores, so training the next one on them would only reinforce its errors."
)
"""The AI-ranking training policy (`training.ai_rankings`), stated once: help texts and docs quote it, and
app.registry.datasets.trains_on is the only code that applies it."""

# Settings sections refuse NaN and infinities, and every number has a range: a value accepted here is one the
# labeling pages, the quality checks and the worker can use (issue 16: `gold_rate: 1e-320` once broke a project).
_SECTION = ConfigDict(extra="forbid", allow_inf_nan=False)
MIN_GOLD_RATE = 0.001
"""The smallest non-zero gold rate: one task in a thousand (below that, gold would almost never be shown)."""

DEFAULT_FLAGS = (
    "fails to follow the instruction",
    "hallucination / makes things up",
    "harmful or toxic",
    "refuses without reason",
)
"""Flags of a new project; its kind may add more (app.projects.kinds: the assistant kind adds
"inappropriate for a customer assistant")."""


class SamplingSettings(BaseModel):
    model_config = _SECTION
    temperature: float = Field(default=1.0, ge=0.0, le=5.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    max_new_tokens: int = Field(default=64, ge=1, le=8192)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    k: int | None = Field(default=None, ge=2, le=16, description="completions per prompt; default k_max")
    # Versions side by side (app.loop.planning.policy_mix): of a task's K candidates, `from_active` come
    # from the active policy and `from_sft` from the SFT version, the rest from the round's new candidate
    # policy (at least one); roles that are the same version pool their share.
    from_active: int = Field(default=1, ge=0, le=16, description="candidates per task from the active policy")
    from_sft: int = Field(default=1, ge=0, le=16, description="candidates per task from the SFT version")
    # Where the worker samples (docs/sampling.md): in its own process (default), or from an OpenAI-compatible
    # `/v1/completions` server (vLLM, SGLang, TGI, llama.cpp, `prefloop models serve`). The API key is read
    # from the environment variable named here, never stored.
    backend: Literal["in_process", "openai"] = "in_process"
    base_url: str = Field(default="", max_length=2000, description="the server's API root, e.g. http://gpu:8000/v1")
    model: str = Field(default="{version}", min_length=1, max_length=200,
                       description="served model name; {version} becomes the policy version's name")
    timeout_s: float = Field(default=120.0, gt=0.0, le=3600.0, description="per request")
    max_retries: int = Field(default=3, ge=0, le=10, description="retries on 5xx, 429, timeouts, lost connections")
    api_key_env: str = Field(default="", max_length=100, pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$",
                             description="name of the environment variable holding the server's API key")
    load_lora: bool = Field(default=False, description="ask the server to load a version it lacks as a LoRA "
                            "adapter (vLLM /v1/load_lora_adapter)")

    @model_validator(mode="after")
    def _endpoint(self) -> SamplingSettings:
        if self.backend == "openai" and not self.base_url.startswith(("http://", "https://")):
            raise ValueError("backend 'openai' needs base_url, an http(s) URL such as http://127.0.0.1:8000/v1")
        return self


class TrainingSettings(BaseModel):
    """How the worker trains the reward model and the policy.

    `ai_rankings` chooses the training data of the reward model and of DPO: `AI_RANKINGS_POLICY`.
    """

    model_config = _SECTION
    policy_model: str = ""
    reward_model: str = ""
    algorithm: Literal["ppo", "rloo", "dpo"] = "ppo"
    # None (the default): chosen from the data and model size by the trainer's plan (docs/reward-model.md).
    rm_epochs: int | None = Field(default=None, ge=1, le=100)
    rm_lr: float | None = Field(default=None, gt=0, le=1.0)
    rm_batch_prompts: int | None = Field(default=None, ge=1, le=4096)
    # The share of ranked prompts held out in the project's fixed test set (app.registry.service.extend_test_set).
    rm_heldout_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    rm_accuracy_tolerance: float = Field(default=0.01, ge=0.0, le=1.0)
    rm_share_prefix: bool = Field(default=False, description="forward each prompt once per ranking group "
                                  "(decoder reward models; same result, faster on long prompts)")
    rm_ensemble_heads: int = Field(default=1, ge=1, le=16, description="reward heads, each fit on its own "
                                   "bootstrap of the rankings; with more than 1 their disagreement is the "
                                   "uncertainty active selection uses")
    ai_rankings: AiRankings = Field(default="exclude", description=AI_RANKINGS_POLICY)
    policy_lr: float = Field(default=1e-5, gt=0, le=1.0)
    policy_steps: int = Field(default=20, ge=1, le=1_000_000)
    policy_batch_prompts: int = Field(default=8, ge=1, le=1024,
                                      description="prompts per PPO/RLOO step; ranking groups per DPO step")
    rloo_k: int = Field(default=4, ge=2, le=64, description="RLOO samples per prompt (leave-one-out baseline)")
    kl_beta: float = Field(default=0.02, ge=0.0, le=100.0)
    # The loop's KL schedule (app.loop.kl_schedule): a proportional controller across rounds, so the KL to the
    # SFT reference, which adds up round after round, approaches the budget instead of passing it.
    kl_schedule: Literal["adaptive", "fixed"] = Field(
        default="adaptive", description="'adaptive': each PPO/RLOO round's KL coefficient follows the last "
        "round's KL to the reference toward kl_target_share of kl_budget, never below kl_beta; 'fixed': kl_beta")
    kl_target_share: float = Field(default=0.6, gt=0.0, le=1.0, description="the adaptive KL schedule's "
                                   "target, as a share of kl_budget")
    dpo_beta: float = Field(default=0.1, gt=0.0, le=100.0)
    kl_budget: float = Field(default=10.0, gt=0.0, le=1_000_000.0)
    reference: Literal["sft", "previous"] = Field(
        default="sft", description="the frozen KL reference of PPO/RLOO: the SFT version (InstructGPT) or "
        "the round's starting policy")
    # Promotion by people (app.loop.promotion): a policy the gates above promote stays provisional until
    # this many human rankings show it beside the incumbent; then the Bradley-Terry leaderboard decides.
    confirm_rankings: int = Field(default=20, ge=0, le=100_000, description="human rankings with both a "
                                  "provisional policy and its incumbent before people confirm or roll it back; "
                                  "0: the training gates decide alone")
    # SFT, stage one of the loop (train_sft): the base policy trained on the project's demonstrations.
    sft_min_demonstrations: int = Field(default=1, ge=1, le=10_000_000, description="demonstrations that make "
                                        "the loop train the SFT version before its first round")
    sft_epochs: float = Field(default=2.0, gt=0.0, le=1000.0, description="passes over the demonstrations")
    sft_lr: float = Field(default=1e-5, gt=0, le=1.0)


class ScheduleSettings(BaseModel):
    model_config = _SECTION
    enabled: bool = False
    retrain_every: int = Field(default=200, ge=1, le=10_000_000, description="new comparisons that trigger retraining")
    prompts_per_round: int = Field(default=50, ge=1, le=10_000_000)
    # Round planning (app.loop.planning.choose_prompts): never-ranked prompts first, then up to
    # `uncertain_share` of the round by reward-model uncertainty, then up to `disagreement_share` by
    # annotator disagreement, then the least recently sampled; test-set prompts never.
    resample: bool = Field(default=True, description="choose already-ranked prompts again for new candidates")
    uncertain_share: float = Field(default=0.5, ge=0.0, le=1.0,
                                   description="at most this share of a round chosen by RM uncertainty")
    disagreement_share: float = Field(default=0.25, ge=0.0, le=1.0, description="at most this share of a "
                                      "round chosen by annotator disagreement (prompts people ranked differently)")
    interval_minutes: int = Field(default=0, ge=0, le=525_600, description="also start a round when none "
                                  "started for this long (0: only on new comparisons or by hand)")


class LabelingSettings(BaseModel):
    model_config = _SECTION
    flags: list[str] = Field(default_factory=lambda: list(DEFAULT_FLAGS), max_length=30)
    likert_enabled: bool = True
    likert_required: bool = False
    rationale_required: bool = False
    flags_required: bool = False
    demonstrations: bool = False
    layout: Literal["stacked", "side-by-side"] = "stacked"
    # "pairwise": K = 2 and one choice on a 7-point preference scale (A much better … about the same … B much
    # better, as Anthropic HH, Chatbot Arena and UltraFeedback collect it); stored as one comparison with
    # its strength. Needs k_max = 2.
    mode: Literal["ranking", "pairwise"] = "ranking"
    edit_window_minutes: int = Field(
        default=10, ge=0, le=24 * 60,
        description="how long after submitting an annotator may change their last ranking (0: never)",
    )
    access: Literal["all", "members"] = Field(
        default="all",
        description="who may see and label the project: every annotator, or only its members (admins always)",
    )
    daily_cap: int | None = Field(
        default=None, ge=1, le=100_000,
        description="rankings one annotator may submit in this project per 24 hours (empty: no cap)",
    )


class QualitySettings(BaseModel):
    model_config = _SECTION
    gold_rate: float = Field(default=0.0, ge=0.0, le=1.0,
                             description=f"share of tasks that are gold checks: 0 (none) or {MIN_GOLD_RATE} to 1")
    gold_threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    pause_below_threshold: bool = False
    active_selection: bool = False
    show_rm_suggestion: bool = False

    @field_validator("gold_rate")
    @classmethod
    def _gold_rate(cls, value: float) -> float:
        if 0.0 < value < MIN_GOLD_RATE:
            raise ValueError(f"must be 0 (no gold) or at least {MIN_GOLD_RATE}")
        return value


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
        if self.settings.labeling.mode == "pairwise" and self.k_max != 2:
            raise ValueError(f"pairwise mode compares two answers: k_max must be 2, not {self.k_max}")
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
