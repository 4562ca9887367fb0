"""`prefloop rm …`: train, evaluate and apply reward models from ranking/pair files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

cli = typer.Typer(help="Reward model: train on rankings, evaluate on pairs, score completions.", no_args_is_help=True)


@cli.callback()
def _group() -> None:
    """Reward model: train on rankings, evaluate on pairs, score completions."""


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _load(file: Path):  # type: ignore[no-untyped-def]
    from worker.training.groups import DataError, load_groups

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
    epochs: Annotated[float, typer.Option(help="Passes over the data (InstructGPT: 1).")] = 1.0,
    lr: Annotated[float, typer.Option(help="Peak learning rate; cosine decay to 10 %.")] = 1e-5,
    batch_prompts: Annotated[int, typer.Option(help="Ranked prompts per optimizer step.")] = 64,
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
    from worker.training.groups import split_by_prompt
    from worker.training.reward import ConfigError, RewardTrainConfig, train_reward_model

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
            share_prefix=share_prefix,
            heldout_fraction=heldout_fraction, extra={"data_file": str(file)},
        )
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc

    def progress(fraction: float, message: str) -> None:
        print(f"[{fraction:6.1%}] {message}", file=sys.stderr)

    result = train_reward_model(config, train, heldout, output, progress=progress)
    metrics = {k: v for k, v in result.metrics.items() if k != "loss_curve"}
    typer.echo(json.dumps({"checkpoint": str(result.checkpoint), **metrics}))


def _groups_and_scorer(checkpoint: Path, file: Path, batch_size: int) -> tuple[list[Any], Any]:
    """The file's groups and a scorer for the checkpoint; a bad checkpoint exits 2 with its reason."""
    _quiet_transformers()
    from worker.training.checkpoint import CheckpointError
    from worker.training.reward import RewardScorer

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
    """Pairwise accuracy (and loss, by-gap accuracy, calibration, per-annotator agreement) as JSON."""
    groups, scorer = _groups_and_scorer(checkpoint, file, batch_size)
    typer.echo(json.dumps(scorer.evaluate(groups)))


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
