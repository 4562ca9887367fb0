"""`train_policy`: the one entry point that loads models, dispatches to PPO/RLOO/DPO/SFT, resumes, evaluates
and writes the checkpoint. Runs in one process or under torchrun (each rank takes a slice of every batch).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from transformers import AutoTokenizer

from worker.training.activation_checkpointing import (
    enable_activation_checkpointing,
    supports_activation_checkpointing,
)
from worker.training.checkpoint import (
    has_training_state,
    load_meta,
    load_training_state,
    save_checkpoint,
    save_training_state,
)
from worker.training.groups import RankingGroup
from worker.training.policy.common import (
    AdaptiveKLController,
    FixedKLController,
    all_reduce_sum,
    per_token_kl,
)
from worker.training.policy.config import PolicyTrainConfig
from worker.training.policy.dpo import DPO, dpo_evaluate
from worker.training.policy.experience import forward_logprobs
from worker.training.policy.ppo import PPO
from worker.training.policy.rloo import RLOO
from worker.training.policy.runtime import (
    ProgressFn,
    RewardFn,
    Runtime,
    StopFn,
    any_rank,
    build_value_model,
    disable_dropout,
    init_distributed_from_env,
    load_lora_state,
    load_train_models,
    make_optimizer,
    rank_and_world,
    reference_mode,
    reward_fn_from_checkpoint,
)
from worker.training.policy.sft import SFT, Demonstration, encode_demonstrations, sft_eval_loss
from worker.training.sampling import Prompt, decode_responses, resolve_device, rollout

STATE_DIR = "train_state"
CHECKPOINT_DIR = "policy"


@dataclass
class PolicyTrainResult:
    """What a run produced: the checkpoint (None when stopped early), summary metrics and per-step history.

    `metrics` holds `before`/`after` held-out evaluations (reward_mean, kl to the reference, response
    length; SFT held-out loss; DPO margin/accuracy) plus `steps`, `stopped` and `seconds`.
    """

    checkpoint: Path | None
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    stopped: bool = False


@torch.no_grad()
def evaluate_policy(rt: Runtime, prompts: Sequence[Prompt], reward_fn: RewardFn | None,
                    judges: Mapping[str, RewardFn] | None = None) -> dict[str, float]:
    """Mean reward (when a reward is known), sequence KL to the reference and length on held-out prompts.

    One sample per prompt with the run's sampling settings and a fixed seed, so before/after compare alike.
    Each judge (another reward model) scores the same samples: `reward_mean@<name>`.
    """
    cfg = rt.config
    judges = dict(judges or {})
    keys = rt.local(range(min(len(prompts), cfg.eval_max_prompts)))  # streams keyed by prompt, not by rank
    local = [prompts[i] for i in keys]
    totals = torch.zeros(4 + len(judges))  # reward sum, kl sum, length sum, count, one reward sum per judge
    if local:
        batch = rollout(
            rt.policy,
            rt.tokenizer,
            local,
            1,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_new_tokens=cfg.max_new_tokens,
            seed=cfg.seed + 99_991,
            prompt_keys=keys,
            batch_size=cfg.generation_batch_size,
            max_prompt_tokens=cfg.max_prompt_tokens,
            use_chat_template=cfg.use_chat_template,
        )
        logp = forward_logprobs(rt, rt.policy, batch)
        with reference_mode(rt.policy, rt.ref) as ref:
            ref_logp = forward_logprobs(rt, ref, batch)
        kl = (per_token_kl(logp, ref_logp, "k1") * batch.response_mask).sum(1)
        texts = decode_responses(rt.tokenizer, batch)
        reward = torch.zeros(len(local))
        if reward_fn is not None:
            reward = torch.as_tensor(reward_fn(local, texts), dtype=torch.float32)
        judged = [torch.as_tensor(judge(local, texts), dtype=torch.float32).sum().cpu() for judge in judges.values()]
        totals += torch.stack(
            [
                reward.sum().cpu(),
                kl.sum().cpu(),
                batch.response_mask.sum().float().cpu(),
                torch.tensor(float(len(local))),
                *judged,
            ]
        )
    totals = all_reduce_sum(totals)
    n = float(totals[3].clamp(min=1))
    out = {"kl": float(totals[1]) / n, "response_length": float(totals[2]) / n, "prompts": float(totals[3])}
    if reward_fn is not None:
        out["reward_mean"] = float(totals[0]) / n
    for i, name in enumerate(judges):
        out[f"reward_mean@{name}"] = float(totals[4 + i]) / n
    return out


def _evaluate(
    rt: Runtime,
    heldout_prompts: Sequence[Prompt] | None,
    reward_fn: RewardFn | None,
    heldout_groups: Sequence[RankingGroup] | None,
    heldout_sft: list[tuple[list[int], list[int]]] | None,
    judges: Mapping[str, RewardFn] | None = None,
) -> dict[str, float]:
    out: dict[str, float] = {}
    if heldout_prompts:
        out.update(evaluate_policy(rt, heldout_prompts, reward_fn, judges))
    if heldout_groups:
        out.update({f"dpo_{k}": v for k, v in dpo_evaluate(rt, heldout_groups).items()})
    if heldout_sft:
        out["sft_loss"] = sft_eval_loss(rt, heldout_sft)
    return out


def _device_for_rank(device: str | torch.device | None) -> torch.device:
    dev = resolve_device(device)
    if dev.type == "cuda" and dist.is_initialized() and dev.index is None:
        dev = torch.device("cuda", dist.get_rank() % torch.cuda.device_count())
    return dev


def _check_resumable(state_dir: Path, config: PolicyTrainConfig) -> None:
    """Refuse a saved state from another algorithm or another LoRA rank (its weights would not fit)."""
    saved = load_meta(state_dir)
    if saved.get("algorithm") != config.algorithm:
        raise ValueError(f"{state_dir} holds a {saved.get('algorithm')} run, not {config.algorithm}")
    saved_r = int(saved.get("config", {}).get("lora_r", 0))
    if saved_r != config.lora_r:
        raise ValueError(
            f"{state_dir} holds a run with lora_r={saved_r}, not {config.lora_r}: "
            "delete it, pass resume=False, or use another output_dir"
        )


def train_policy(
    config: PolicyTrainConfig,
    *,
    policy_path: str | Path,
    output_dir: str | Path,
    reference_path: str | Path | None = None,
    prompts: Sequence[Prompt] | None = None,
    reward_fn: RewardFn | None = None,
    reward_model_path: str | Path | None = None,
    groups: Sequence[RankingGroup] | None = None,
    demonstrations: Sequence[Demonstration] | None = None,
    heldout_prompts: Sequence[Prompt] | None = None,
    heldout_groups: Sequence[RankingGroup] | None = None,
    heldout_demonstrations: Sequence[Demonstration] | None = None,
    ptx_texts: Sequence[str] | None = None,
    judge_model_paths: Mapping[str, str | Path] | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    device: str | torch.device | None = "auto",
) -> PolicyTrainResult:
    """Train a policy with `config.algorithm` and write `output_dir/policy` (a verified checkpoint).

    PPO/RLOO need `prompts` and a reward (`reward_fn`, or `reward_model_path` adapted through the reward
    package); DPO needs ranking `groups`; SFT needs `demonstrations`. Training state is saved every
    `save_every` steps to `output_dir/train_state`; a later call with the same output_dir resumes from it.
    `reference_path` is the frozen KL reference (default: a copy of the starting policy); KL in the
    metrics is measured against it.
    When `should_stop()` turns true the state is saved and the result has `stopped=True`, no checkpoint.
    `judge_model_paths` name more reward models that score the same held-out samples before and after
    (`reward_mean@<name>`), a second opinion for promotion.
    """
    started = time.perf_counter()
    init_distributed_from_env()
    rank, world = rank_and_world()
    config.validate(world)
    dev = _device_for_rank(device)
    torch.manual_seed(config.seed)
    out_dir = Path(output_dir)
    algo_name = config.algorithm

    if reward_fn is None and reward_model_path is not None:
        reward_fn = reward_fn_from_checkpoint(reward_model_path, dev)
    judges = {name: reward_fn_from_checkpoint(path, dev) for name, path in (judge_model_paths or {}).items()}
    if algo_name in ("ppo", "rloo") and reward_fn is None:
        raise ValueError(f"{algo_name} needs reward_fn or reward_model_path")

    tokenizer: Any = AutoTokenizer.from_pretrained(str(policy_path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    policy, ref = load_train_models(config, policy_path, dev, reference_path)
    value = None
    value_note = ""
    if algo_name == "ppo":
        value, value_note = build_value_model(reward_model_path, policy_path)
        disable_dropout(value)
        if config.gradient_checkpointing and supports_activation_checkpointing(value.backbone):
            enable_activation_checkpointing(value.backbone)
        value = value.to(dev)

    if algo_name == "sft":
        n_items = len(demonstrations or [])
    elif algo_name == "dpo":
        n_items = len(groups or [])
    else:
        n_items = 0
    total_steps = config.steps or max(1, math.ceil(config.epochs * n_items / config.batch_size))
    params = [p for p in policy.parameters() if p.requires_grad]
    if value is not None:
        params += list(value.parameters())
    optimizer, scheduler = make_optimizer(config, params, total_steps)
    kl_ctl: FixedKLController = (
        AdaptiveKLController(config.kl_coef, config.kl_target, config.kl_horizon)
        if config.kl_controller == "adaptive"
        else FixedKLController(config.kl_coef)
    )
    rt = Runtime(
        config=config,
        policy=policy,
        ref=ref,
        tokenizer=tokenizer,
        device=dev,
        optimizer=optimizer,
        scheduler=scheduler,
        total_steps=total_steps,
        rank=rank,
        world=world,
        value=value,
        kl_ctl=kl_ctl,
    )
    if algo_name == "ppo":
        assert reward_fn is not None  # refused on entry otherwise
        algo: Any = PPO(rt, prompts or [], reward_fn, ptx_texts)
    elif algo_name == "rloo":
        assert reward_fn is not None
        algo = RLOO(rt, prompts or [], reward_fn)
    elif algo_name == "dpo":
        algo = DPO(rt, groups or [])
    else:
        algo = SFT(rt, demonstrations or [])
    heldout_sft = (
        encode_demonstrations(
            tokenizer,
            heldout_demonstrations,
            config.max_prompt_tokens,
            config.max_completion_tokens,
            config.use_chat_template,
        )
        if heldout_demonstrations
        else None
    )

    state_dir = out_dir / STATE_DIR
    meta = {
        "kind": "policy",
        "algorithm": algo_name,
        "config": config.to_dict(),
        "base_policy": str(policy_path),
        "reference_policy": str(reference_path or policy_path),
        "value_init": value_note,
        "world_size": world,
    }
    start_step = 0
    before: dict[str, float] | None = None
    if config.resume and has_training_state(state_dir):
        _check_resumable(state_dir, config)
        lora = config.lora_r > 0
        state = load_training_state(
            state_dir,
            model=None if lora else policy,  # a LoRA state holds only the adapters
            optimizer=optimizer,
            scheduler=scheduler,
            restore_rng=False,
        )
        if lora:
            load_lora_state(policy, state_dir)
        start_step = state.step
        rt.history = list(state.extra.get("history", []))
        kl_ctl.load_state_dict(state.extra["kl_ctl"])
        before = dict(state.extra.get("before") or {})
        if value is not None:
            value.load_state_dict(state.extra["value_state"])

    def save_state(step: int) -> None:
        # Under LoRA `policy` is a peft model: save_pretrained writes only the adapters (the base is frozen).
        if rank == 0:
            extra = {"history": rt.history, "kl_ctl": kl_ctl.state_dict(), "before": before}
            if value is not None:
                extra["value_state"] = value.state_dict()
            save_training_state(
                state_dir,
                policy,
                tokenizer,
                meta,
                step=step,
                optimizer=optimizer,
                scheduler=scheduler,
                extra=extra,
            )
        if dist.is_initialized():
            dist.barrier()

    if before is None:
        before = _evaluate(rt, heldout_prompts, reward_fn, heldout_groups, heldout_sft, judges)
    policy.train()
    stopped = False
    for step in range(start_step, total_steps):
        if should_stop is not None and any_rank(bool(should_stop())):
            save_state(step)
            stopped = True
            break
        t0 = time.perf_counter()
        metrics = algo.step(step)
        lr = rt.lr()
        scheduler.step()
        metrics.update({"step": float(step + 1), "lr": lr, "step_s": time.perf_counter() - t0})
        rt.history.append(metrics)
        if progress is not None and rank == 0:
            progress((step + 1) / total_steps, f"{algo_name} step {step + 1}/{total_steps}")
        if (step + 1) % config.save_every == 0 and step + 1 < total_steps:
            save_state(step + 1)

    summary: dict[str, Any] = {"before": before, "steps": len(rt.history), "stopped": stopped}
    if stopped:
        summary["seconds"] = time.perf_counter() - started
        return PolicyTrainResult(checkpoint=None, metrics=summary, history=rt.history, stopped=True)
    policy.eval()
    summary["after"] = _evaluate(rt, heldout_prompts, reward_fn, heldout_groups, heldout_sft, judges)
    summary["seconds"] = time.perf_counter() - started
    checkpoint = out_dir / CHECKPOINT_DIR
    if rank == 0:
        # Under LoRA the policy is a PeftModel (typed as the model it wraps): merge the adapters in.
        final = policy.merge_and_unload() if config.lora_r > 0 else policy  # type: ignore[operator]
        save_checkpoint(
            checkpoint,
            final,
            tokenizer,
            {**meta, "metrics": summary},
            extra_files={"history.json": json.dumps(rt.history).encode()},
        )
        shutil.rmtree(state_dir, ignore_errors=True)  # the final checkpoint supersedes the resume state
    if dist.is_initialized():
        dist.barrier()
    return PolicyTrainResult(checkpoint=checkpoint, metrics=summary, history=rt.history)
