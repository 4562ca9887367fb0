"""`prefloop policy ...`: train a policy (PPO/RLOO/DPO/SFT) and sample completions from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from worker.training.groups import load_groups

cli = typer.Typer(help="Policy training and sampling.", no_args_is_help=True)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise typer.BadParameter(f"{path}:{n}: invalid JSON ({exc.msg})") from exc
            if not isinstance(rec, dict):
                raise typer.BadParameter(f"{path}:{n}: expected a JSON object")
            rows.append(rec)
    return rows


def read_prompts(path: Path) -> list[Any]:
    """Prompts from a .jsonl file (`prompt` text or `messages` list per line) or a text file (one per line)."""
    if path.suffix != ".jsonl":
        return [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = []
    for n, rec in enumerate(_read_jsonl(path), start=1):
        prompt = rec.get("messages", rec.get("prompt"))
        if not isinstance(prompt, str | list) or not prompt:
            raise typer.BadParameter(f"{path}: record {n} has no 'prompt' or 'messages'")
        out.append(prompt)
    return out


def read_demonstrations(path: Path) -> list[Any]:
    """SFT demonstrations from JSONL lines with `prompt` (or `messages`) and `completion`."""
    from worker.training.policy import Demonstration  # lazy: imports torch

    out = []
    for n, rec in enumerate(_read_jsonl(path), start=1):
        prompt, completion = rec.get("messages", rec.get("prompt")), rec.get("completion")
        if not prompt or not isinstance(completion, str):
            raise typer.BadParameter(f"{path}: record {n} needs 'prompt' and 'completion'")
        out.append(Demonstration(prompt=prompt, completion=completion))
    return out


@cli.command()
def train(
    policy: Annotated[str, typer.Argument(help="Starting policy: local directory or hub id.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Output directory (checkpoint in DIR/policy).")
    ],
    algorithm: Annotated[str, typer.Option(help="ppo | rloo | dpo | sft")] = "ppo",
    reward_model: Annotated[Path | None, typer.Option(help="Reward-model checkpoint (PPO/RLOO).")] = None,
    prompts: Annotated[
        Path | None, typer.Option(help="Training prompts (.jsonl or .txt) for PPO/RLOO.")
    ] = None,
    heldout: Annotated[
        Path | None, typer.Option(help="Held-out prompts for before/after evaluation.")
    ] = None,
    groups: Annotated[Path | None, typer.Option(help="Ranking groups / pairs JSONL for DPO.")] = None,
    demonstrations: Annotated[Path | None, typer.Option(help="Demonstrations JSONL for SFT.")] = None,
    steps: Annotated[int | None, typer.Option(help="Outer steps (SFT/DPO: default from --epochs).")] = None,
    epochs: Annotated[float, typer.Option(help="SFT/DPO epochs when --steps is not given.")] = 1.0,
    learning_rate: Annotated[float, typer.Option("--lr")] = 1e-5,
    batch_size: Annotated[int, typer.Option(help="SFT demonstrations / DPO groups per step.")] = 8,
    rollout_batch_size: Annotated[int, typer.Option(help="Prompts per PPO/RLOO step.")] = 8,
    num_samples: Annotated[int | None, typer.Option("-k", help="Samples per prompt (PPO 1, RLOO 4).")] = None,
    kl_coef: Annotated[float, typer.Option(help="KL penalty beta (PPO/RLOO).")] = 0.02,
    dpo_beta: Annotated[float, typer.Option(help="DPO beta.")] = 0.1,
    max_new_tokens: Annotated[int, typer.Option()] = 48,
    temperature: Annotated[float, typer.Option()] = 1.0,
    ppo_epochs: Annotated[int, typer.Option()] = 1,
    minibatch_size: Annotated[int | None, typer.Option()] = None,
    micro_batch_size: Annotated[int | None, typer.Option()] = None,
    gradient_checkpointing: Annotated[bool, typer.Option()] = False,
    lora_r: Annotated[int, typer.Option(help="LoRA rank (0 = full fine-tuning; needs pip install 'prefloop[lora]').")] = 0,
    seed: Annotated[int, typer.Option()] = 0,
    config_json: Annotated[
        Path | None, typer.Option(help="JSON file of further PolicyTrainConfig fields.")
    ] = None,
) -> None:
    """Train a policy and print the run's metrics as one JSON object."""
    from worker.training.policy import PolicyRun, PolicyTrainConfig, train_policy  # lazy: imports torch

    fields: dict[str, Any] = dict(
        algorithm=algorithm,
        steps=steps if steps is not None or algorithm in ("sft", "dpo") else 20,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        rollout_batch_size=rollout_batch_size,
        num_samples=num_samples,
        kl_coef=kl_coef,
        dpo_beta=dpo_beta,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        ppo_epochs=ppo_epochs,
        minibatch_size=minibatch_size,
        micro_batch_size=micro_batch_size,
        gradient_checkpointing=gradient_checkpointing,
        lora_r=lora_r,
        seed=seed,
    )
    if config_json is not None:
        fields.update(json.loads(config_json.read_text(encoding="utf-8")))
    try:
        config = PolicyTrainConfig.from_dict(fields).validate()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc

    def progress(fraction: float, message: str) -> None:
        print(f"[{fraction:6.1%}] {message}", file=sys.stderr)

    result = train_policy(PolicyRun(
        config,
        policy_path=policy,
        output_dir=output,
        prompts=read_prompts(prompts) if prompts else None,
        reward_model_path=reward_model,
        groups=load_groups(groups) if groups else None,
        demonstrations=read_demonstrations(demonstrations) if demonstrations else None,
        heldout_prompts=read_prompts(heldout) if heldout else None,
        progress=progress,
    ))
    print(
        json.dumps(
            {
                "checkpoint": str(result.checkpoint) if result.checkpoint else None,
                "metrics": result.metrics,
                "history": result.history,
            }
        )
    )


@cli.command()
def sample(
    model: Annotated[str, typer.Argument(help="Policy checkpoint directory or hub id.")],
    prompts: Annotated[
        Path, typer.Argument(help="Prompts (.jsonl with prompt/messages, or .txt one per line).")
    ],
    k: Annotated[int, typer.Option("-k", help="Completions per prompt.")] = 4,
    temperature: Annotated[float, typer.Option()] = 1.0,
    top_p: Annotated[float, typer.Option()] = 1.0,
    max_new_tokens: Annotated[int, typer.Option()] = 64,
    seed: Annotated[int, typer.Option()] = 0,
    batch_size: Annotated[int, typer.Option(help="Distinct prompts per forward.")] = 16,
    device: Annotated[str, typer.Option()] = "auto",
) -> None:
    """Print one JSON line per prompt: {"prompt": ..., "completions": [...]}."""
    from worker.training.sampling import load_policy, sample_completions  # lazy: imports torch

    items = read_prompts(prompts)
    policy, tokenizer = load_policy(model, device=device)
    outs = sample_completions(
        policy,
        tokenizer,
        items,
        k,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        seed=seed,
        batch_size=batch_size,
    )
    for prompt, completions in zip(items, outs, strict=True):
        print(json.dumps({"prompt": prompt, "completions": completions}))
