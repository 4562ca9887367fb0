"""The reward-model training loop: `train_reward_model`, one explicit loop, single process or torchrun DDP.

The schedule (steps, batch, epochs, lr, warmup) comes from `plan.make_plan` and is logged and stored in
meta.json. Each optimizer step takes `batch_prompts` whole groups (shared across ranks), forwards every
completion once, and accumulates the K-wise loss over token-budgeted micro-batches. Losses are sums divided
by the step's global group weight, so 1 process and N ranks compute the same gradient.

Model selection: with enough prompts a validation split (`val_fraction`, by prompt, taken from the training
data only) is scored before training and every `eval_every` steps; the weights with the lowest validation
loss are kept in `output_dir/best`, training stops after `patience` passes without improvement, and the
final checkpoint holds the best weights (the curve is in the metrics).

A resume state (weights, optimizer, scheduler, RNG, step, loss and validation curves) is written atomically
to `output_dir/state` every `checkpoint_every` steps and when `should_stop()` says so; a rerun continues.
"""

from __future__ import annotations

import dataclasses
import math
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
    load_weights,
    save_checkpoint,
    save_training_state,
)
from worker.training.devices import bf16_autocast
from worker.training.distributed import DistInfo, barrier, local_rank_device, setup_distributed
from worker.training.dropout import disable_dropout
from worker.training.groups import RankingGroup, split_by_prompt
from worker.training.reward.batching import (
    EncodedGroup,
    collate,
    encode_groups,
    pack_micro_batches,
    truncation_report,
)
from worker.training.reward.config import RewardTrainConfig
from worker.training.reward.eval import pairwise_metrics, score_encoded_groups
from worker.training.reward.loss import kwise_loss_sum
from worker.training.reward.model import RewardModule, load_reward_model
from worker.training.reward.plan import TrainPlan, make_plan

Progress = Callable[[float, str], None]

# Early stopping may end a run only after this fraction of its planned steps.
MIN_FRACTION_BEFORE_STOP = 1 / 3

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


def _lr_lambda(plan: TrainPlan, min_lr_ratio: float) -> Callable[[int], float]:
    """Linear warmup, then cosine decay from 1 to `min_lr_ratio` at the last step."""
    warmup, total = plan.warmup_steps, plan.total_steps

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        span = max(total - warmup - 1, 1)
        progress = min(max(step - warmup, 0) / span, 1.0)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def bootstrap_weights(n_groups: int, heads: int, seed: int) -> torch.Tensor:
    """[groups, heads] Poisson(1) counts: each ensemble member's bootstrap resample of the training groups.

    The Poisson form of the bootstrap (Oza & Russell 2001; used for ensembles of networks by Osband et al.
    2016) weights every group independently per member, so members see the same batches but different data,
    and no member depends on the batch layout. A fixed seed gives the same resamples on every rank and resume.
    """
    generator = torch.Generator().manual_seed(int(seed) * 7919 + 17)
    return torch.poisson(torch.ones(n_groups, heads), generator=generator)


def member_coefficients(
    pair_coef: torch.Tensor, boot: torch.Tensor, group_ids: Sequence[int], encoded: Sequence[EncodedGroup]
) -> torch.Tensor:
    """Pair coefficients [pairs] of a micro-batch (its groups in `group_ids` order, as `collate` lays their
    pairs out) times each member's bootstrap weight of the pair's group, averaged over members: [pairs, heads]."""
    counts = torch.tensor([len(encoded[g].pairs) for g in group_ids], device=boot.device)
    per_pair = boot[torch.tensor(list(group_ids), device=boot.device)].repeat_interleave(counts, dim=0)
    return pair_coef.unsqueeze(1) * per_pair / boot.shape[1]


def _step_groups(step: int, plan: TrainPlan, seed: int) -> list[int]:
    """Global group indices of optimizer step `step`: each epoch is a fresh seeded permutation."""
    epoch, within = divmod(step, plan.steps_per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(plan.n_groups)
    picked: list[int] = order[within * plan.batch_prompts : (within + 1) * plan.batch_prompts].tolist()
    return picked


def validation_split(
    train: Sequence[RankingGroup], config: RewardTrainConfig
) -> tuple[list[RankingGroup], list[RankingGroup]]:
    """(groups to fit, validation groups): `val_fraction` of the prompts (all rankings of a prompt on one
    side) when that fraction of the groups is at least `val_min_groups`; otherwise everything fits and there
    is no validation."""
    if config.val_fraction <= 0 or round(len(train) * config.val_fraction) < config.val_min_groups:
        return list(train), []
    fit, val = split_by_prompt(train, config.val_fraction, seed=config.seed + 1)
    return (fit, val) if fit and val else (list(train), [])


def _check_resume_config(saved: dict[str, Any], config: RewardTrainConfig, n_groups: int, saved_groups: int) -> None:
    current = config.to_dict()
    # A field the saved state predates had its default then.
    defaults = {f.name: f.default for f in dataclasses.fields(RewardTrainConfig)}
    changed = sorted(k for k in current
                     if k not in _RESUME_FREE_FIELDS and saved.get(k, defaults.get(k)) != current[k])
    if changed:
        raise CheckpointError(f"cannot resume: config changed since the saved state ({', '.join(changed)})")
    if saved_groups != n_groups:
        raise CheckpointError(f"cannot resume: the saved state trained on {saved_groups} groups, now {n_groups}")


def _shard_scores(
    module: RewardModule, encoded: Sequence[EncodedGroup], pad_id: int, device: torch.device,
    config: RewardTrainConfig, d: DistInfo,
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

    Returns metrics (plan, loss and validation curves, truncation, throughput, held-out metrics) and the
    checkpoint path; `heldout` is only measured, never used for selection. Under torchrun,
    call it on every rank with the same arguments: groups are sharded across ranks and rank 0 writes.
    When `should_stop()` turns true, the resume state is saved and the result has `stopped=True`;
    calling again with the same config and data continues where it stopped.
    """
    config.validate()
    if not train:
        raise ValueError("no training groups")
    output_dir = Path(output_dir)
    state_dir = output_dir / "state"
    d = setup_distributed()
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
    d: DistInfo,
    progress: Progress | None,
    should_stop: Callable[[], bool] | None,
) -> RewardTrainResult:
    device = local_rank_device(d)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)

    def report(fraction: float, message: str) -> None:
        if progress is not None and d.main:
            progress(fraction, message)

    model, tokenizer = load_reward_model(config.base_model, gradient_checkpointing=config.gradient_checkpointing,
                                         pooling=config.pooling, heads=config.ensemble_heads)
    if config.disable_dropout:
        # Dropout gives the two sides of a pair different random masks, so the margin r_w - r_l the loss
        # reads carries mask noise of the size of the margins being learned (docs/reward-model.md).
        disable_dropout(model)
    module = RewardModule(model).to(device)
    module.train()
    share_prefix = config.share_prefix and module.can_share_prefix  # encoders: each sequence whole
    pad_id = int(tokenizer.pad_token_id)
    fit_groups, val_groups = validation_split(train, config)
    encoded = encode_groups(fit_groups, tokenizer, config.max_length)
    val_encoded = encode_groups(val_groups, tokenizer, config.max_length) if val_groups else []
    n_params = sum(p.numel() for p in module.parameters())
    plan = make_plan(config, len(encoded), n_params)
    heads = module.heads
    boot = bootstrap_weights(len(encoded), heads, config.seed).to(device) if heads > 1 else None
    total_steps = plan.total_steps
    truncation = truncation_report(encoded)
    report(0.0, f"plan: {plan.summary()}; pooling {module.pooling}; "
                f"{len(val_groups)} validation prompts" + (", no early stopping" if not val_groups else ""))
    if truncation["sequences_cut"] or truncation["identical_pairs_left_out"]:
        report(0.0, f"truncation: {truncation['pairs_cut']} of {truncation['pairs']} training pairs cut to "
                    f"{config.max_length} tokens ({truncation['pairs_with_completion_cut']} into a completion, "
                    f"{truncation['tokens_removed']} tokens, {truncation['turns_dropped']} oldest turns); "
                    f"{truncation['identical_pairs_left_out']} identical pairs left out")

    optimizer = torch.optim.AdamW(
        module.parameters(), lr=plan.lr, betas=config.adam_betas, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(plan, config.min_lr_ratio))
    start_step = 0
    loss_curve: list[float] = []
    val_curve: list[dict[str, float]] = []
    best: dict[str, Any] = {}  # step and loss of the weights in best_dir
    bad_evals = 0
    train_seconds = 0.0
    best_dir = output_dir / "best"
    if has_training_state(state_dir):
        state = load_training_state(state_dir, module.model, optimizer, scheduler)
        _check_resume_config(state.meta.get("config", {}), config, len(encoded), int(state.meta.get("train_groups", -1)))
        start_step = state.step
        loss_curve = [float(x) for x in state.extra.get("loss_curve", [])]
        val_curve = [dict(x) for x in state.extra.get("val_curve", [])]
        best = dict(state.extra.get("best", {}))
        bad_evals = int(state.extra.get("bad_evals", 0))
        train_seconds = float(state.extra.get("train_seconds", 0.0))
        report(start_step / total_steps, f"resumed at step {start_step}/{total_steps}")

    net: torch.nn.Module = module
    if d.world > 1:
        net = DistributedDataParallel(module, device_ids=[d.local_rank] if device.type == "cuda" else None)
    autocast = bf16_autocast(device, config.bf16)

    meta_base = {"kind": "reward_model", "config": config.to_dict(), "train_groups": len(encoded),
                 "plan": plan.to_dict(), "pooling": module.pooling}

    def save_state(step: int) -> None:
        if d.main:
            save_training_state(
                state_dir, module.model, tokenizer, meta_base, step=step, optimizer=optimizer, scheduler=scheduler,
                extra={"loss_curve": loss_curve, "train_seconds": train_seconds, "val_curve": val_curve,
                       "best": best, "bad_evals": bad_evals},
            )
        barrier()

    sign = -1.0 if config.select_on == "accuracy" else 1.0  # minimise: losses as they are, accuracy negated

    def validate(step: int) -> bool:
        """Score the validation split; keep the weights when best; True when patience ran out."""
        nonlocal bad_evals
        scores = _shard_scores(module, val_encoded, pad_id, device, config, d)
        m = pairwise_metrics(val_groups, scores)
        point = {"step": step, "loss": float(m["loss"]), "calibrated_loss": float(m["calibrated_loss"]),
                 "accuracy": float(m["accuracy"])}
        val_curve.append(point)
        if not best or sign * point[config.select_on] < sign * best[config.select_on]:
            best.clear()
            best.update(point)
            bad_evals = 0
            if d.main:
                save_checkpoint(best_dir, module.model, tokenizer, {**meta_base, "step": step})
            barrier()
        else:
            bad_evals += 1
        report(step / total_steps, f"validation at step {step}: loss {m['loss']:.4f} calibrated "
                                   f"{m['calibrated_loss']:.4f} accuracy {m['accuracy']:.3f} (best "
                                   f"{config.select_on} {best[config.select_on]:.4f} at step {best['step']})")
        # Early passes on a small validation set are noisy; never give up before a third of the plan.
        return bool(config.patience) and bad_evals >= config.patience and step >= total_steps * MIN_FRACTION_BEFORE_STOP

    comparisons = 0
    real_tokens = 0
    timed_seconds = 0.0
    stopped_early_at: int | None = None
    if val_encoded and not val_curve:
        validate(0)  # the starting weights are a candidate too (a run that only got worse keeps them)
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
        batch = _step_groups(step, plan, config.seed)
        weight_total = sum(encoded[i].weight for i in batch if encoded[i].pairs)
        rows_total = sum(len(encoded[i].input_ids) for i in batch)
        mine_ids = batch[d.rank :: d.world]
        dummy = not mine_ids  # this rank got no group: a zero-weight pass keeps DDP's collectives in step
        if dummy:
            mine_ids = [batch[0]]
        mine = [encoded[i] for i in mine_ids]
        micro = pack_micro_batches(mine, config.token_budget)
        step_loss = torch.zeros((), device=device)
        for m_index, indices in enumerate(micro):
            mb = collate([mine[i] for i in indices], pad_id, config.rank_gap_weighting,
                         share_prefix=share_prefix).to(device)
            last = m_index == len(micro) - 1
            sync = net.no_sync() if isinstance(net, DistributedDataParallel) and not last else nullcontext()
            with sync:
                with autocast:
                    rewards = net(**mb.model_inputs(), members=boot is not None).float()
                coef = mb.pair_coef
                if boot is not None:  # [pairs, heads]: each member's bootstrap weight of the pair's group
                    coef = member_coefficients(coef, boot, [mine_ids[i] for i in indices], encoded)
                pair_part = kwise_loss_sum(rewards, mb.win, mb.lose, coef) / max(weight_total, 1e-12)
                center = config.center_coef * rewards.pow(2).sum() / (rows_total * heads)
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
        if val_encoded and (done % plan.eval_every == 0 or done == total_steps) and validate(done):
            stopped_early_at = done
            report(done / total_steps, f"early stop at step {done}: no better validation {config.select_on} in "
                                       f"{config.patience} passes; keeping step {best['step']}")
            break
        if config.checkpoint_every and done % config.checkpoint_every == 0 and done < total_steps:
            save_state(done)

    if d.world > 1:
        counts = torch.tensor([float(comparisons), float(real_tokens)], device=device)
        dist.all_reduce(counts)
        comparisons, real_tokens = int(counts[0].item()), int(counts[1].item())

    if best and best_dir.is_dir() and best["step"] != len(loss_curve):
        load_weights(module.model, best_dir)  # every rank reads the same best weights
        report(1.0, f"restored the best validation weights (step {best['step']})")

    # Shift so the mean reward over the training completions (validation included) is 0; the scorer
    # subtracts the bias.
    report(1.0, "computing reward bias and held-out metrics")
    all_scores = _shard_scores(module, [*encoded, *val_encoded], pad_id, device, config, d)
    train_scores = all_scores[: len(encoded)]
    flat = [s for g in all_scores for s in g]
    bias = float(sum(flat) / len(flat))
    metrics: dict[str, Any] = {
        "plan": plan.to_dict(),
        "pooling": module.pooling,
        "steps": len(loss_curve),
        "total_steps": total_steps,
        "steps_per_epoch": plan.steps_per_epoch,
        "train_groups": len(train),
        "fit_groups": len(encoded),
        "train_pairs": sum(len(g.pairs) for g in encoded),
        "truncation": truncation,
        "loss_curve": loss_curve,
        "final_train_loss": loss_curve[-1] if loss_curve else float("nan"),
        "train_seconds": train_seconds,
        "comparisons_per_s": comparisons / timed_seconds if timed_seconds > 0 else float("nan"),
        "tokens_per_s": real_tokens / timed_seconds if timed_seconds > 0 else float("nan"),
        "world_size": d.world,
        "device": str(device),
        "prefix_sharing": share_prefix,
        "reward_bias": bias,
        "train_accuracy": pairwise_metrics(fit_groups, [[s - bias for s in g] for g in train_scores])["accuracy"],
        "validation": {
            "n_groups": len(val_groups), "select_on": config.select_on, "curve": val_curve,
            "best_step": best.get("step"), "best_loss": best.get("loss"),
            "best_calibrated_loss": best.get("calibrated_loss"), "best_accuracy": best.get("accuracy"),
            "stopped_early_at_step": stopped_early_at, "patience": config.patience,
        },
    }
    if device.type == "cuda":
        metrics["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated(device))
    if heldout:
        held_encoded = encode_groups(heldout, tokenizer, config.max_length)
        held_scores = _shard_scores(module, held_encoded, pad_id, device, config, d)
        metrics["heldout"] = pairwise_metrics(heldout, [[s - bias for s in g] for g in held_scores])
        metrics["heldout"]["truncation"] = truncation_report(held_encoded)

    final_dir = output_dir / "model"
    if d.main:
        save_checkpoint(final_dir, module.model, tokenizer, {**meta_base, "reward_bias": bias, "metrics": metrics})
        # The finished checkpoint supersedes the resume state and the best-so-far copy.
        shutil.rmtree(state_dir, ignore_errors=True)
        shutil.rmtree(best_dir, ignore_errors=True)
    barrier()
    return RewardTrainResult(metrics=metrics, checkpoint=final_dir)
