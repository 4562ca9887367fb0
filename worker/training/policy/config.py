"""The validated configuration of a policy-training run (saved in the checkpoint's meta.json).

Defaults follow InstructGPT (Ouyang et al. 2022, appendix C.4) for PPO: per-token KL reward coefficient
beta = 0.02, value function initialised from the reward model, GAE with gamma = 1 and lambda = 0.95, clip 0.2,
and the PPO-ptx mix when pretraining texts are given; Ziegler et al. (2019) for the adaptive KL controller;
Ahmadian et al. (2024) for RLOO (k samples, leave-one-out baseline, KL in the reward); Rafailov et al.
(2023) for DPO (beta = 0.1).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

Algorithm = Literal["ppo", "rloo", "dpo", "sft"]
ALGORITHMS: tuple[str, ...] = ("ppo", "rloo", "dpo", "sft")


@dataclass
class PolicyTrainConfig:
    """Hyper-parameters of one policy-training job. Call `validate()` (train_policy does) before use.

    Batch sizes are global (summed over DDP ranks) and must divide by the world size:
    `rollout_batch_size` counts prompts per RL step (each sampled `num_samples` times), `batch_size` counts
    SFT demonstrations or DPO ranking groups per optimizer step, `minibatch_size` rows (samples) per PPO/RLOO
    optimizer step; `micro_batch_size` (rows per forward on each rank; gradient accumulation in between)
    bounds memory. `steps` is the number of outer iterations; for SFT/DPO, None means `epochs` over the data.
    """

    algorithm: Algorithm = "ppo"
    seed: int = 0
    steps: int | None = 20
    epochs: float = 1.0
    # optimisation
    learning_rate: float = 1e-5
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    max_grad_norm: float | None = 1.0
    batch_size: int = 8
    rollout_batch_size: int = 8
    minibatch_size: int | None = None
    micro_batch_size: int | None = None
    # sampling (shared by rollouts and held-out evaluation)
    num_samples: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 48
    max_prompt_tokens: int = 256
    max_completion_tokens: int = 256
    generation_batch_size: int = 32
    use_chat_template: bool = True
    # KL to the frozen reference (the starting policy)
    kl_coef: float = 0.02
    kl_controller: Literal["fixed", "adaptive"] = "fixed"
    kl_target: float = 6.0
    kl_horizon: float = 10000.0
    kl_estimator: Literal["k1", "k3"] = "k1"
    # PPO/RLOO stop early once a step's rollouts are this far (nats per sequence) from the reference; the
    # policy of that step is the result. The loop sets it below its KL budget so no round trains past it.
    kl_stop: float | None = None
    missing_eos_penalty: float | None = 1.0
    # PPO
    ppo_epochs: int = 1
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    normalize_advantages: bool | None = None
    whiten_rewards: bool = False
    ptx_coef: float = 0.0
    ptx_batch_size: int = 4
    # DPO
    dpo_beta: float = 0.1
    # memory / precision / adapters
    gradient_checkpointing: bool = False
    bf16: bool | None = None
    lora_r: int = 0
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: list[str] | None = None
    # resume and evaluation
    save_every: int = 10
    resume: bool = True
    eval_max_prompts: int = 64

    def samples_per_prompt(self) -> int:
        """k: PPO defaults to one sample per prompt, RLOO to four."""
        if self.num_samples is not None:
            return self.num_samples
        return 4 if self.algorithm == "rloo" else 1

    def advantages_normalized(self) -> bool:
        """PPO whitens advantages by default (InstructGPT/Ziegler); RLOO uses the raw leave-one-out advantage."""
        if self.normalize_advantages is not None:
            return self.normalize_advantages
        return self.algorithm == "ppo"

    def validate(self, world_size: int = 1) -> PolicyTrainConfig:
        """Raise ValueError naming every invalid field; returns self for chaining."""
        errors: list[str] = []

        def check(ok: bool, msg: str) -> None:
            if not ok:
                errors.append(msg)

        check(self.algorithm in ALGORITHMS, f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        check(self.steps is None or self.steps >= 1, "steps must be >= 1 (or None for SFT/DPO epochs)")
        check(self.steps is not None or self.algorithm in ("sft", "dpo"), "steps is required for ppo/rloo")
        check(self.epochs > 0, "epochs must be > 0")
        check(self.learning_rate > 0, "learning_rate must be > 0")
        check(
            self.lr_schedule in ("constant", "linear", "cosine"), "lr_schedule must be constant|linear|cosine"
        )
        check(self.warmup_steps >= 0, "warmup_steps must be >= 0")
        check(0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1, "adam betas must be in [0, 1)")
        check(self.max_grad_norm is None or self.max_grad_norm > 0, "max_grad_norm must be > 0 or None")
        for name in (
            "batch_size",
            "rollout_batch_size",
            "max_new_tokens",
            "max_prompt_tokens",
            "max_completion_tokens",
            "generation_batch_size",
            "ppo_epochs",
            "save_every",
            "eval_max_prompts",
            "ptx_batch_size",
        ):
            check(getattr(self, name) >= 1, f"{name} must be >= 1")
        for name in ("minibatch_size", "micro_batch_size", "num_samples"):
            value = getattr(self, name)
            check(value is None or value >= 1, f"{name} must be >= 1")
        check(self.samples_per_prompt() >= 2 or self.algorithm != "rloo", "rloo needs num_samples >= 2")
        check(self.temperature > 0, "temperature must be > 0 for training rollouts")
        check(0 < self.top_p <= 1, "top_p must be in (0, 1]")
        check(self.kl_coef >= 0, "kl_coef must be >= 0")
        check(self.kl_controller in ("fixed", "adaptive"), "kl_controller must be fixed|adaptive")
        check(self.kl_target > 0 and self.kl_horizon > 0, "kl_target and kl_horizon must be > 0")
        check(self.kl_estimator in ("k1", "k3"), "kl_estimator must be k1|k3")
        check(self.kl_stop is None or self.kl_stop > 0, "kl_stop must be > 0")
        check(
            0 < self.cliprange < 1 and self.cliprange_value > 0,
            "cliprange must be in (0, 1), cliprange_value > 0",
        )
        check(0 < self.gamma <= 1 and 0 <= self.lam <= 1, "gamma must be in (0, 1], lam in [0, 1]")
        check(self.vf_coef >= 0 and self.ptx_coef >= 0, "vf_coef and ptx_coef must be >= 0")
        check(self.dpo_beta > 0, "dpo_beta must be > 0")
        check(self.lora_r >= 0 and 0 <= self.lora_dropout < 1, "lora_r must be >= 0, lora_dropout in [0, 1)")
        if world_size > 1:
            global_batch = self.batch_size if self.algorithm in ("sft", "dpo") else self.rollout_batch_size
            check(
                global_batch % world_size == 0,
                f"the global batch ({global_batch}) must divide by {world_size} ranks",
            )
        if errors:
            raise ValueError("invalid policy training config: " + "; ".join(errors))
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (what goes into meta.json)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyTrainConfig:
        """Build from a dict, rejecting unknown keys (typos must not be silently ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown policy config field(s): {', '.join(unknown)}")
        return cls(**data)
