"""`prefloop rm …`: train, evaluate and apply reward models from ranking/pair files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from worker.training.groups import DataError, RankingGroup, load_groups, split_by_prompt

cli = typer.Typer(help="Reward model: train on rankings, evaluate on pairs, score completions.", no_args_is_help=True)


@cli.callback()
def _group() -> None:
    """Reward model: train on rankings, evaluate on pairs, score completions."""


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging  # lazy: optional [worker] extra

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _load(file: Path) -> list[RankingGroup]:
    try:
        return load_groups(file)
    except DataError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc


@cli.command("train")
def train_command(
    base_model: Annotated[Path, typer.Argument(help="Local model directory (AutoModelForSequenceClassification).")],
    file: Annotated[Path, typer.Argument(help="Rankings or pairs file (JSONL/JSON).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output directory (checkpoint in model/).")],
    epochs: Annotated[float | None, typer.Option(
        help="Passes over the data (default: enough for --min-steps steps, at most --max-epochs).")] = None,
    lr: Annotated[float | None, typer.Option(
        help="Peak learning rate; cosine decay to 10 % (default: from the model size).")] = None,
    batch_prompts: Annotated[int | None, typer.Option(
        help="Ranked prompts per optimizer step (default: ~16 steps per epoch, 8 to 64).")] = None,
    warmup_steps: Annotated[int | None, typer.Option(
        help="Linear warmup steps (default: 5 % with the automatic lr, 0 with --lr).")] = None,
    min_steps: Annotated[int, typer.Option(help="Automatic epochs aim for this many optimizer steps.")] = 200,
    max_epochs: Annotated[float, typer.Option(help="Most passes the automatic epochs may choose.")] = 10.0,
    max_steps: Annotated[int, typer.Option(help="Hard cap on optimizer steps (0: none).")] = 0,
    pooling: Annotated[str, typer.Option(
        help="Where the reward is read: auto, last (decoders), mean (encoders), cls, head (model's own).")] = "auto",
    ensemble_heads: Annotated[int, typer.Option(
        help="Reward heads on one backbone, each fit on its own bootstrap of the rankings; their disagreement "
             "is the uncertainty active selection uses (1: a single reward model).")] = 1,
    val_fraction: Annotated[float, typer.Option(
        help="Training prompts kept aside for model selection and early stopping.")] = 0.1,
    eval_every: Annotated[int, typer.Option(help="Steps between validation passes (0: ~20 per run).")] = 0,
    patience: Annotated[int, typer.Option(
        help="Validation passes without improvement before stopping (0: never stop early).")] = 5,
    select_on: Annotated[str, typer.Option(
        help="Validation score that picks the kept weights: calibrated_loss, loss or accuracy.")] = "calibrated_loss",
    token_budget: Annotated[int, typer.Option(help="Padded tokens per micro-batch.")] = 16384,
    heldout_fraction: Annotated[float, typer.Option(help="Fraction of prompts held out for evaluation.")] = 0.1,
    heldout_file: Annotated[Path | None, typer.Option(help="Separate held-out file (overrides the fraction).")] = None,
    max_length: Annotated[int, typer.Option(help="Max tokens per prompt+completion.")] = 512,
    center_coef: Annotated[float, typer.Option(help="Reward-centering coefficient.")] = 0.01,
    rank_gap_weighting: Annotated[bool, typer.Option(help="Weight pairs by rank gap.")] = False,
    gradient_checkpointing: Annotated[bool, typer.Option(help="Trade compute for memory.")] = False,
    share_prefix: Annotated[bool, typer.Option(
        help="Forward each prompt once per ranking group (decoder models; not with --gradient-checkpointing).")] = False,
    checkpoint_every: Annotated[int, typer.Option(help="Save a resume state every N steps (0: off).")] = 0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train a reward model (also under torchrun); prints the metrics as JSON."""
    _quiet_transformers()
    from worker.training.reward import ConfigError, RewardTrainConfig, train_reward_model  # lazy: torch

    groups = _load(file)
    if heldout_file is not None:
        train, heldout = groups, _load(heldout_file)
    else:
        train, heldout = split_by_prompt(groups, heldout_fraction, seed=seed)
    try:
        config = RewardTrainConfig(
            base_model=str(base_model), epochs=epochs, lr=lr, batch_prompts=batch_prompts, token_budget=token_budget,
            max_length=max_length, center_coef=center_coef, rank_gap_weighting=rank_gap_weighting,
            gradient_checkpointing=gradient_checkpointing, checkpoint_every=checkpoint_every, seed=seed,
            share_prefix=share_prefix, warmup_steps=warmup_steps, min_steps=min_steps, max_epochs=max_epochs,
            max_steps=max_steps, pooling=pooling, ensemble_heads=ensemble_heads, val_fraction=val_fraction, eval_every=eval_every,
            patience=patience, select_on=select_on, heldout_fraction=heldout_fraction, extra={"data_file": str(file)},
        )
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc

    def progress(fraction: float, message: str) -> None:
        print(f"[{fraction:6.1%}] {message}", file=sys.stderr)

    result = train_reward_model(config, train, heldout, output, progress=progress)
    for line in train_summary(result.metrics):
        print(line, file=sys.stderr)
    metrics = {k: v for k, v in result.metrics.items() if k != "loss_curve"}
    typer.echo(json.dumps({"checkpoint": str(result.checkpoint), **metrics}))


def _accuracy_line(name: str, m: dict[str, Any]) -> str:
    lo, hi = m.get("accuracy_ci95", [float("nan")] * 2)
    base = m.get("length_baseline", {})
    blo, bhi = base.get("accuracy_ci95", [float("nan")] * 2)
    return (f"{name}: accuracy {m['accuracy']:.3f} [95 % CI {lo:.3f}-{hi:.3f}] on {m['n_pairs']} pairs "
            f"({m.get('n_identical_excluded', 0)} identical excluded, {m.get('n_ties', 0)} ties as half); "
            f"length-only baseline {base.get('accuracy', float('nan')):.3f} [{blo:.3f}-{bhi:.3f}]")


def train_summary(metrics: dict[str, Any]) -> list[str]:
    """The run summary printed after `rm train`: the plan, model selection, truncation, held-out accuracy."""
    plan = metrics["plan"]
    c = plan["chosen"]
    lines = [
        f"plan: {plan['n_groups']} groups, batch {plan['batch_prompts']} ({c['batch_prompts']}), "
        f"{plan['steps_per_epoch']} steps/epoch, epochs {plan['epochs']:g} ({c['epochs']}), "
        f"{plan['total_steps']} steps, lr {plan['lr']:.2g} ({c['lr']}), warmup {plan['warmup_steps']} "
        f"({c['warmup_steps']}), pooling {metrics['pooling']}",
    ]
    val = metrics["validation"]
    if val["n_groups"]:
        early = (f", stopped early at step {val['stopped_early_at_step']}"
                 if val["stopped_early_at_step"] is not None else "")
        curve = " ".join(f"{p['step']}:{p[val['select_on']]:.3f}" for p in val["curve"])
        lines.append(f"validation ({val['n_groups']} groups, selected on {val['select_on']}): best at step "
                     f"{val['best_step']} of {metrics['steps']} (loss {val['best_loss']:.4f}, calibrated "
                     f"{val['best_calibrated_loss']:.4f}, accuracy {val['best_accuracy']:.3f}){early}; "
                     f"curve step:{val['select_on']} {curve}")
    else:
        lines.append("validation: none (too few prompts for val_fraction x prompts >= val_min_groups); "
                     "the last step is kept")
    t = metrics["truncation"]
    lines.append(f"truncation: {t['pairs_cut']} of {t['pairs']} training pairs cut ({t['pairs_with_completion_cut']}"
                 f" into a completion), {t['tokens_removed']} tokens removed (max {t['max_tokens_removed']} per "
                 f"sequence), {t['turns_dropped']} oldest turns dropped; {t['identical_pairs_left_out']} "
                 "identical pairs left out")
    if "heldout" in metrics and metrics["heldout"].get("n_pairs"):
        lines.append(_accuracy_line("held-out", metrics["heldout"]))
    return lines


def _groups_and_scorer(checkpoint: Path, file: Path, batch_size: int) -> tuple[list[Any], Any]:
    """The file's groups and a scorer for the checkpoint; a bad checkpoint exits 2 with its reason."""
    _quiet_transformers()
    from worker.training.checkpoint import CheckpointError  # lazy: imports torch
    from worker.training.reward import RewardScorer  # lazy: imports torch

    groups = _load(file)
    try:
        return groups, RewardScorer(checkpoint, batch_size=batch_size)
    except CheckpointError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc


@cli.command("eval")
def eval_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint directory (or a training output directory).")],
    file: Annotated[Path, typer.Argument(help="Pairs or rankings file.")],
    batch_size: Annotated[int, typer.Option(help="Sequences per forward pass.")] = 32,
) -> None:
    """Pairwise accuracy with a 95 % interval and a length-only baseline (and loss, accuracy by rank gap and
    by length difference, calibration, per-annotator agreement, truncation) as JSON; a summary on stderr."""
    groups, scorer = _groups_and_scorer(checkpoint, file, batch_size)
    report = scorer.evaluate(groups)
    if report["n_pairs"]:
        print(_accuracy_line("eval", report), file=sys.stderr)
    else:
        print(f"eval: no comparable pairs ({report['n_identical_excluded']} identical excluded)", file=sys.stderr)
    typer.echo(json.dumps(report))


@cli.command("score")
def score_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint directory (or a training output directory).")],
    file: Annotated[Path, typer.Argument(help="Rankings or pairs file; every completion is scored.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write JSONL here instead of stdout.")] = None,
    batch_size: Annotated[int, typer.Option(help="Sequences per forward pass.")] = 32,
) -> None:
    """Rewards per completion as JSONL: one line per input record with `rewards` in completion order."""
    groups, scorer = _groups_and_scorer(checkpoint, file, batch_size)
    lines = []
    for g, rewards in zip(groups, scorer.score_groups(groups), strict=True):
        lines.append(json.dumps({"prompt": g.prompt, "completions": g.completions, "rewards": rewards,
                                 "group_id": g.group_id, "prompt_id": g.prompt_id}))
    text = "\n".join(lines) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


if __name__ == "__main__":  # `torchrun --nproc_per_node N -m worker.commands.rm train ...`
    cli()
