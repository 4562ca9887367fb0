"""The reward-model training loop: `train_reward_model`, one explicit loop, single process or torchrun DDP.

Each optimizer step takes `batch_prompts` whole groups (shared across ranks), forwards every completion
once, and accumulates the K-wise loss over token-budgeted micro-batches. Losses are sums divided by the
step's global group weight, so 1 process and N ranks compute the same gradient. A resume state
(weights, optimizer, scheduler, RNG, step, loss curve) is written atomically to `output_dir/state`
every `checkpoint_every` steps and when `should_stop()` says so; a rerun continues from it.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from worker.training.checkpoint import (
    CheckpointError,
    has_training_state,
    load_training_state,
    save_checkpoint,
    save_training_state,
)
from worker.training.groups import RankingGroup
from worker.training.reward.batching import EncodedGroup, collate, encode_groups, pack_micro_batches
from worker.training.reward.config import RewardTrainConfig
from worker.training.reward.eval import pairwise_metrics, score_encoded_groups
from worker.training.reward.loss import kwise_loss_sum
from worker.training.reward.model import RewardModule, load_reward_model

Progress = Callable[[float, str], None]

# Config fields that may differ between an interrupted run and its resumption.
_RESUME_FREE_FIELDS = {"checkpoint_every", "eval_batch_size", "extra"}


@dataclass
class RewardTrainResult:
    """Outcome of `train_reward_model`: metrics and the final checkpoint (None when stopped early)."""

    metrics: dict[str, Any]
    checkpoint: Path | None
    stopped: bool = False
    state_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed() -> _Dist:
    """Join the torchrun process group when launched by torchrun (gloo on CPU, nccl on GPU)."""
    if dist.is_available() and dist.is_initialized():
        return _Dist(dist.get_world_size(), dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0)))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    return _Dist(dist.get_world_size(), dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0)), owns_group=True)


def _lr_lambda(config: RewardTrainConfig, total_steps: int) -> Callable[[int], float]:
    """Linear warmup, then cosine decay from 1 to `min_lr_ratio` at the last step."""

    def factor(step: int) -> float:
        if config.warmup_steps and step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        span = max(total_steps - config.warmup_steps - 1, 1)
        progress = min(max(step - config.warmup_steps, 0) / span, 1.0)
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def step_plan(n_groups: int, config: RewardTrainConfig) -> tuple[int, int]:
    """(steps per epoch, total optimizer steps) for `n_groups` training groups."""
    per_epoch = max(1, math.ceil(n_groups / config.batch_prompts))
    return per_epoch, max(1, math.ceil(per_epoch * config.epochs))


def _step_groups(step: int, n_groups: int, config: RewardTrainConfig) -> list[int]:
    """Global group indices of optimizer step `step`: each epoch is a fresh seeded permutation."""
    per_epoch, _ = step_plan(n_groups, config)
    epoch, within = divmod(step, per_epoch)
    order = np.random.default_rng([config.seed, epoch]).permutation(n_groups)
    return order[within * config.batch_prompts : (within + 1) * config.batch_prompts].tolist()


def _check_resume_config(saved: dict[str, Any], config: RewardTrainConfig, n_groups: int, saved_groups: int) -> None:
    current = config.to_dict()
    changed = sorted(k for k in current if k not in _RESUME_FREE_FIELDS and saved.get(k) != current[k])
    if changed:
        raise CheckpointError(f"cannot resume: config changed since the saved state ({', '.join(changed)})")
    if saved_groups != n_groups:
        raise CheckpointError(f"cannot resume: the saved state trained on {saved_groups} groups, now {n_groups}")


def _shard_scores(
    module: RewardModule, encoded: Sequence[EncodedGroup], pad_id: int, device: torch.device,
    config: RewardTrainConfig, d: _Dist,
) -> list[list[float]]:
    """Score groups split across ranks and gather all results on every rank (input order kept)."""
    mine = list(range(d.rank, len(encoded), d.world))
    scores = score_encoded_groups(
        module, [encoded[i] for i in mine], pad_id, device,
        batch_size=config.eval_batch_size, token_budget=config.token_budget, bf16=config.bf16,
    )
    if d.world == 1:
        return scores
    gathered: list[Any] = [None] * d.world
    dist.all_gather_object(gathered, list(zip(mine, scores, strict=True)))
    out: list[list[float]] = [[] for _ in encoded]
    for part in gathered:
        for i, s in part:
            out[i] = s
    return out


def train_reward_model(
    config: RewardTrainConfig,
    train: Sequence[RankingGroup],
    heldout: Sequence[RankingGroup] | None,
    output_dir: Path,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RewardTrainResult:
    """Train a reward model on ranking groups and write the checkpoint to `output_dir/model`.

    Returns metrics (loss curve, throughput, held-out metrics) and the checkpoint path. Under torchrun,
    call it on every rank with the same arguments: groups are sharded across ranks and rank 0 writes.
    When `should_stop()` turns true, the resume state is saved and the result has `stopped=True`;
    calling again with the same config and data continues where it stopped.
    """
    config.validate()
    if not train:
        raise ValueError("no training groups")
    output_dir = Path(output_dir)
    state_dir = output_dir / "state"
    d = _setup_distributed()
    try:
        return _train(config, list(train), list(heldout or []), output_dir, state_dir, d, progress, should_stop)
    finally:
        if d.owns_group:
            dist.destroy_process_group()


def _train(
    config: RewardTrainConfig,
    train: list[RankingGroup],
    heldout: list[RankingGroup],
    output_dir: Path,
    state_dir: Path,
    d: _Dist,
    progress: Progress | None,
    should_stop: Callable[[], bool] | None,
) -> RewardTrainResult:
    device = torch.device(f"cuda:{d.local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)

    def report(fraction: float, message: str) -> None:
        if progress is not None and d.main:
            progress(fraction, message)

    model, tokenizer = load_reward_model(config.base_model, gradient_checkpointing=config.gradient_checkpointing)
    if config.disable_dropout:
        for sub in model.modules():
            if isinstance(sub, torch.nn.Dropout):
                sub.p = 0.0
    module = RewardModule(model).to(device)
    module.train()
    share_prefix = config.share_prefix and module.can_share_prefix  # encoders: each sequence whole
    pad_id = int(tokenizer.pad_token_id)
    encoded = encode_groups(train, tokenizer, config.max_length)
    per_epoch, total_steps = step_plan(len(encoded), config)

    optimizer = torch.optim.AdamW(
        module.parameters(), lr=config.lr, betas=config.adam_betas, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config, total_steps))
    start_step = 0
    loss_curve: list[float] = []
    train_seconds = 0.0
    if has_training_state(state_dir):
        state = load_training_state(state_dir, module.model, optimizer, scheduler)
        _check_resume_config(state.meta.get("config", {}), config, len(encoded), int(state.meta.get("train_groups", -1)))
        start_step = state.step
        loss_curve = [float(x) for x in state.extra.get("loss_curve", [])]
        train_seconds = float(state.extra.get("train_seconds", 0.0))
        report(start_step / total_steps, f"resumed at step {start_step}/{total_steps}")

    net: torch.nn.Module = module
    if d.world > 1:
        net = DistributedDataParallel(module, device_ids=[d.local_rank] if device.type == "cuda" else None)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if config.bf16 and device.type == "cuda" else nullcontext()

    meta_base = {"kind": "reward_model", "config": config.to_dict(), "train_groups": len(encoded)}

    def save_state(step: int) -> None:
        if d.main:
            save_training_state(
                state_dir, module.model, tokenizer, meta_base, step=step, optimizer=optimizer, scheduler=scheduler,
                extra={"loss_curve": loss_curve, "train_seconds": train_seconds},
            )
        if d.world > 1:
            dist.barrier()

    comparisons = 0
    real_tokens = 0
    timed_seconds = 0.0
    for step in range(start_step, total_steps):
        stop = bool(should_stop and should_stop())
        if d.world > 1:
            flag = torch.tensor([1.0 if stop else 0.0], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        if stop:
            save_state(step)
            report(step / total_steps, f"stopped at step {step}/{total_steps}; state saved")
            return RewardTrainResult(
                metrics={"stopped_at_step": step, "total_steps": total_steps, "loss_curve": loss_curve},
                checkpoint=None, stopped=True, state_dir=state_dir,
            )
        t0 = time.perf_counter()
        batch = _step_groups(step, len(encoded), config)
        weight_total = sum(encoded[i].weight for i in batch if encoded[i].pairs)
        rows_total = sum(len(encoded[i].input_ids) for i in batch)
        mine = [encoded[i] for i in batch[d.rank :: d.world]]
        dummy = not mine  # this rank got no group: a zero-weight pass keeps DDP's collectives in step
        if dummy:
            mine = [encoded[batch[0]]]
        micro = pack_micro_batches(mine, config.token_budget)
        step_loss = torch.zeros((), device=device)
        for m_index, indices in enumerate(micro):
            mb = collate([mine[i] for i in indices], pad_id, config.rank_gap_weighting,
                         share_prefix=share_prefix).to(device)
            last = m_index == len(micro) - 1
            sync = net.no_sync() if isinstance(net, DistributedDataParallel) and not last else nullcontext()
            with sync:
                with autocast:
                    rewards = net(**mb.model_inputs()).float()
                pair_part = kwise_loss_sum(rewards, mb.win, mb.lose, mb.pair_coef) / max(weight_total, 1e-12)
                center = config.center_coef * rewards.pow(2).sum() / rows_total
                loss = pair_part + center
                if dummy:
                    loss = loss * 0.0
                # DDP averages gradients over ranks; scaling by world size turns that into the global sum.
                (loss * d.world).backward()
            if not dummy:
                step_loss += pair_part.detach()
                comparisons += int(mb.win.numel())
                real_tokens += mb.n_real_tokens
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(module.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if d.world > 1:
            dist.all_reduce(step_loss)
        loss_value = float(step_loss.item())
        loss_curve.append(loss_value)
        elapsed = time.perf_counter() - t0
        train_seconds += elapsed
        timed_seconds += elapsed
        done = step + 1
        report(done / total_steps, f"step {done}/{total_steps} loss {loss_value:.4f}")
        if config.checkpoint_every and done % config.checkpoint_every == 0 and done < total_steps:
            save_state(done)

    if d.world > 1:
        counts = torch.tensor([float(comparisons), float(real_tokens)], device=device)
        dist.all_reduce(counts)
        comparisons, real_tokens = int(counts[0].item()), int(counts[1].item())

    # Shift so the mean reward over the training completions is 0 (the scorer subtracts the bias).
    report(1.0, "computing reward bias and held-out metrics")
    train_scores = _shard_scores(module, encoded, pad_id, device, config, d)
    flat = [s for g in train_scores for s in g]
    bias = float(sum(flat) / len(flat))
    metrics: dict[str, Any] = {
        "steps": total_steps,
        "steps_per_epoch": per_epoch,
        "train_groups": len(encoded),
        "train_pairs": sum(len(g.pairs) for g in encoded),
        "loss_curve": loss_curve,
        "final_train_loss": loss_curve[-1] if loss_curve else float("nan"),
        "train_seconds": train_seconds,
        "comparisons_per_s": comparisons / timed_seconds if timed_seconds > 0 else float("nan"),
        "tokens_per_s": real_tokens / timed_seconds if timed_seconds > 0 else float("nan"),
        "world_size": d.world,
        "device": str(device),
        "prefix_sharing": share_prefix,
        "reward_bias": bias,
        "train_accuracy": pairwise_metrics(train, [[s - bias for s in g] for g in train_scores])["accuracy"],
    }
    if device.type == "cuda":
        metrics["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated(device))
    if heldout:
        held_encoded = encode_groups(heldout, tokenizer, config.max_length)
        held_scores = _shard_scores(module, held_encoded, pad_id, device, config, d)
        metrics["heldout"] = pairwise_metrics(heldout, [[s - bias for s in g] for g in held_scores])

    final_dir = output_dir / "model"
    if d.main:
        save_checkpoint(final_dir, module.model, tokenizer, {**meta_base, "reward_bias": bias, "metrics": metrics})
        # The finished checkpoint supersedes the resume state.
        shutil.rmtree(state_dir, ignore_errors=True)
    if d.world > 1:
        dist.barrier()
    return RewardTrainResult(metrics=metrics, checkpoint=final_dir)
