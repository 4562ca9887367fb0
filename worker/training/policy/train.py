"""`train_policy`: the one entry point that loads models, prepares the algorithm the config names (PPO, RLOO,
DPO or SFT, through the `PolicyAlgorithm` protocol), resumes, evaluates and writes the checkpoint. Runs in
one process or under torchrun (each rank takes a slice of every batch).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from worker.training.checkpoint import (
    has_training_state,
    load_meta,
    load_training_state,
    save_checkpoint,
    save_training_state,
)
from worker.training.distributed import any_rank, barrier, device_for_rank, setup_distributed
from worker.training.policy.algorithm import AlgorithmEntry, PolicyAlgorithm, Setup
from worker.training.policy.config import PolicyTrainConfig
from worker.training.policy.dpo import prepare_dpo
from worker.training.policy.evaluation import HeldOut, evaluate_heldout
from worker.training.policy.models import load_lora_state, load_tokenizer, load_train_models
from worker.training.policy.ppo import prepare_ppo
from worker.training.policy.rewards import reward_fn_from_checkpoint
from worker.training.policy.rloo import prepare_rloo
from worker.training.policy.run import PolicyRun
from worker.training.policy.runtime import Runtime, make_optimizer
from worker.training.policy.sft import encode_demonstrations, prepare_sft

STATE_DIR = "train_state"
CHECKPOINT_DIR = "policy"

IMPLEMENTATIONS: dict[str, AlgorithmEntry] = {
    "ppo": AlgorithmEntry(prepare_ppo, needs_reward=True),
    "rloo": AlgorithmEntry(prepare_rloo, needs_reward=True),
    "dpo": AlgorithmEntry(prepare_dpo),
    "sft": AlgorithmEntry(prepare_sft),
}


@dataclass
class PolicyTrainResult:
    """What a run produced: the checkpoint (None when stopped early), summary metrics and per-step history.

    `metrics` holds `before`/`after` held-out evaluations (reward_mean, kl to the reference, response
    length; SFT held-out loss; DPO margin/accuracy) plus `steps`, `stopped`, `kl_stopped_at` (the step
    `kl_stop` ended the run after, or None) and `seconds`.
    """

    checkpoint: Path | None
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    stopped: bool = False


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


@dataclass
class _Progress:
    """Where the loop stands: the step to run next, the history so far and the `before` evaluation."""

    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    before: dict[str, float] | None = None
    kl_stopped_at: int | None = None  # the step after which `kl_stop` ended the run


@dataclass
class _States:
    """The run's resume state in `output_dir/train_state` and its final checkpoint in `output_dir/policy`."""

    rt: Runtime
    algo: PolicyAlgorithm
    out_dir: Path
    meta: dict[str, Any]

    @property
    def state_dir(self) -> Path:
        return self.out_dir / STATE_DIR

    def restore(self) -> _Progress:
        """The saved progress when resuming is on and a state exists (weights, optimizer, scheduler and the
        algorithm's state loaded in place); a fresh start otherwise."""
        rt, config = self.rt, self.rt.config
        if not (config.resume and has_training_state(self.state_dir)):
            return _Progress()
        _check_resumable(self.state_dir, config)
        lora = config.lora_r > 0
        state = load_training_state(
            self.state_dir,
            model=None if lora else rt.policy,  # a LoRA state holds only the adapters
            optimizer=rt.optimizer,
            scheduler=rt.scheduler,
            restore_rng=False,
        )
        if lora:
            load_lora_state(rt.policy, self.state_dir)
        self.algo.load_state(state.extra)
        return _Progress(state.step, list(state.extra.get("history", [])), dict(state.extra.get("before") or {}))

    def save(self, progress: _Progress) -> None:
        """Write the resume state on rank 0; every rank waits for it."""
        # Under LoRA `policy` is a peft model: save_pretrained writes only the adapters (the base is frozen).
        rt = self.rt
        if rt.rank == 0:
            extra = {"history": progress.history, "before": progress.before, **self.algo.state()}
            save_training_state(
                self.state_dir,
                rt.policy,
                rt.tokenizer,
                self.meta,
                step=progress.step,
                optimizer=rt.optimizer,
                scheduler=rt.scheduler,
                extra=extra,
            )
        barrier()

    def finish(self, summary: dict[str, Any], history: list[dict[str, float]]) -> Path:
        """Write the final checkpoint on rank 0 (adapters merged under LoRA) and drop the resume state."""
        rt, checkpoint = self.rt, self.out_dir / CHECKPOINT_DIR
        if rt.rank == 0:
            # Under LoRA the policy is a PeftModel (typed as the model it wraps): merge the adapters in.
            final = rt.policy.merge_and_unload() if rt.config.lora_r > 0 else rt.policy  # type: ignore[operator]
            save_checkpoint(
                checkpoint,
                final,
                rt.tokenizer,
                {**self.meta, "metrics": summary},
                extra_files={"history.json": json.dumps(history).encode()},
            )
            shutil.rmtree(self.state_dir, ignore_errors=True)  # the final checkpoint supersedes the resume state
        barrier()
        return checkpoint


def _prepare(run: PolicyRun, rank: int, world: int) -> tuple[Runtime, PolicyAlgorithm, HeldOut]:
    """Reward, models, the algorithm, optimizer and runtime, and the held-out data, in a fixed order (the
    random state each consumes is part of what a seed reproduces)."""
    config = run.config
    dev = device_for_rank(run.device)
    torch.manual_seed(config.seed)
    entry = IMPLEMENTATIONS[config.algorithm]
    reward_fn = run.reward_fn
    if reward_fn is None and run.reward_model_path is not None:
        reward_fn = reward_fn_from_checkpoint(run.reward_model_path, dev)
    judges = {name: reward_fn_from_checkpoint(path, dev) for name, path in run.judge_model_paths.items()}
    if entry.needs_reward and reward_fn is None:
        raise ValueError(f"{config.algorithm} needs reward_fn or reward_model_path")
    tokenizer = load_tokenizer(run.policy_path)
    policy, ref = load_train_models(config, run.policy_path, dev, run.reference_path)
    algo = entry.prepare(Setup(run, reward_fn, tokenizer, dev))
    total_steps = config.steps or max(1, math.ceil(config.epochs * algo.epoch_size() / config.batch_size))
    params = [p for p in policy.parameters() if p.requires_grad]
    for module in algo.trained_modules():
        params += list(module.parameters())
    optimizer, scheduler = make_optimizer(config, params, total_steps)
    rt = Runtime(config=config, policy=policy, ref=ref, tokenizer=tokenizer, device=dev, optimizer=optimizer,
                 scheduler=scheduler, total_steps=total_steps, rank=rank, world=world,
                 trained=algo.trained_modules())
    sft_examples = (
        encode_demonstrations(tokenizer, run.heldout_demonstrations, config.max_prompt_tokens,
                              config.max_completion_tokens, config.use_chat_template)
        if run.heldout_demonstrations
        else None
    )
    held = HeldOut(run.heldout_prompts, reward_fn, run.heldout_groups, sft_examples, judges)
    return rt, algo, held


def _meta(run: PolicyRun, algo: PolicyAlgorithm, world: int) -> dict[str, Any]:
    meta = {
        "kind": "policy",
        "algorithm": run.config.algorithm,
        "config": run.config.to_dict(),
        "base_policy": str(run.policy_path),
        "reference_policy": str(run.reference_path or run.policy_path),
        "value_init": "",
        "world_size": world,
    }
    meta.update(algo.meta())
    return meta


def _train_steps(run: PolicyRun, rt: Runtime, algo: PolicyAlgorithm, states: _States, at: _Progress) -> bool:
    """Run the remaining outer steps; True when `should_stop` ended the run early (its state saved)."""
    name, total = run.config.algorithm, rt.total_steps
    for step in range(at.step, total):
        if run.should_stop is not None and any_rank(bool(run.should_stop())):
            at.step = step
            states.save(at)
            return True
        t0 = time.perf_counter()
        metrics = algo.step(rt, step)
        lr = rt.lr()
        rt.scheduler.step()
        metrics.update({"step": float(step + 1), "lr": lr, "step_s": time.perf_counter() - t0})
        at.history.append(metrics)
        at.step = step + 1
        if run.progress is not None and rt.rank == 0:
            run.progress((step + 1) / total, f"{name} step {step + 1}/{total}")
        kl_stop = run.config.kl_stop
        if kl_stop is not None and metrics.get("kl", 0.0) > kl_stop:  # the same value on every rank
            at.kl_stopped_at = step + 1
            break
        if (step + 1) % run.config.save_every == 0 and step + 1 < total:
            states.save(at)
    return False


def train_policy(run: PolicyRun) -> PolicyTrainResult:
    """Train a policy with `run.config.algorithm` and write `output_dir/policy` (a verified checkpoint).

    What each algorithm needs, how resuming and stopping work: see `PolicyRun`.
    """
    started = time.perf_counter()
    info = setup_distributed()
    run.config.validate(info.world)
    rt, algo, held = _prepare(run, info.rank, info.world)
    states = _States(rt, algo, Path(run.output_dir), _meta(run, algo, info.world))
    at = states.restore()
    if at.before is None:
        at.before = evaluate_heldout(rt, held)
    rt.policy.train()
    stopped = _train_steps(run, rt, algo, states, at)
    summary: dict[str, Any] = {"before": at.before, "steps": len(at.history), "stopped": stopped,
                               "kl_stopped_at": at.kl_stopped_at}
    if stopped:
        summary["seconds"] = time.perf_counter() - started
        return PolicyTrainResult(checkpoint=None, metrics=summary, history=at.history, stopped=True)
    rt.policy.eval()
    summary["after"] = evaluate_heldout(rt, held)
    summary["seconds"] = time.perf_counter() - started
    checkpoint = states.finish(summary, at.history)
    return PolicyTrainResult(checkpoint=checkpoint, metrics=summary, history=at.history)
