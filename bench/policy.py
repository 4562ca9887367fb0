"""Policy-training benchmark: prefloop PPO and RLOO steps vs TRL's RLOOTrainer at equal settings.

Same model, prompts, planted reward, batch (prompts x k samples), completion length, temperature, beta
and learning rate for both. Reports time per step (median after a warm-up step), generated tokens/s,
trained tokens/s and peak memory, then one JSON line of the headline figures. `--quick` runs a tiny
locally created model on CPU (well under five minutes); without it, on a GPU, `--model` (e.g. a ~0.5B
hub id) is used when given.

    python bench/policy.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402
import torch  # noqa: E402

from worker.training.policy import PolicyRun, PolicyTrainConfig, train_policy  # noqa: E402
from worker.training.tiny import init_tiny  # noqa: E402

_WORDS_TEXT = (
    "the cat sat on a mat and ate food while dog ran in park near old trees we like to read books about "
    "rivers mountains cities people music summer winter ocean rain sun moon friend family"
)
WORDS = _WORDS_TEXT.split()


def planted_reward(prompts: Sequence[Any], completions: Sequence[Any], **_: Any) -> list[float]:
    """Fraction of vowel characters in the completion (TRL passes message lists for conversational data)."""
    out = []
    for c in completions:
        text = c if isinstance(c, str) else "".join(m.get("content", "") for m in c)
        out.append(sum(ch in "aeiou" for ch in text) / max(len(text), 1))
    return out


def _reward_tensor(prompts: Sequence[Any], completions: Sequence[str]) -> torch.Tensor:
    return torch.tensor(planted_reward(prompts, completions))


def _prompts(n: int) -> list[str]:
    rng = random.Random(0)
    return [f"write about {rng.choice(WORDS)} and {rng.choice(WORDS)}" for _ in range(n)]


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return psutil.Process().memory_info().rss / 2**20


def run_prefloop(algorithm: str, model: str, args: argparse.Namespace, out: Path) -> dict[str, float]:
    cfg = PolicyTrainConfig(
        algorithm=algorithm,
        steps=args.steps + 1,
        rollout_batch_size=args.prompts,
        num_samples=args.k,
        max_new_tokens=args.max_new_tokens,
        learning_rate=1e-5,
        kl_coef=args.beta,
        temperature=1.0,
        missing_eos_penalty=None,
        save_every=10_000,
        generation_batch_size=args.prompts,
    )
    result = train_policy(PolicyRun(
        cfg, policy_path=model, output_dir=out, prompts=_prompts(64), reward_fn=_reward_tensor
    ))
    hist = result.history[1:]  # drop the warm-up step
    return {
        "step_s": statistics.median(h["step_s"] for h in hist),
        "gen_tokens_per_s": statistics.median(h["gen_tokens_per_s"] for h in hist),
        "train_tokens_per_s": statistics.median(h["train_tokens_per_s"] for h in hist),
        "gen_tokens_per_step": statistics.mean(h["gen_tokens"] for h in hist),
    }


def run_trl_rloo(model: str, args: argparse.Namespace, out: Path) -> dict[str, float]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    times: list[float] = []

    class Timer(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, *_: Any, **__: Any) -> None:
            times.append(time.perf_counter())

    tok = AutoTokenizer.from_pretrained(model)
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in _prompts(64)])
    config = RLOOConfig(
        output_dir=str(out),
        max_steps=args.steps + 2,
        per_device_train_batch_size=args.prompts * args.k,
        gradient_accumulation_steps=1,
        num_generations=args.k,
        max_completion_length=args.max_new_tokens,
        temperature=1.0,
        top_p=1.0,
        beta=args.beta,
        learning_rate=1e-5,
        num_iterations=1,
        report_to="none",
        logging_steps=1000,
        save_strategy="no",
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available(),
        seed=0,
        dataloader_num_workers=0,
    )
    trainer = RLOOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model),
        reward_funcs=planted_reward,
        args=config,
        train_dataset=data,
        processing_class=tok,
        callbacks=[Timer()],
    )
    trainer.train()
    deltas = [b - a for a, b in zip(times, times[1:], strict=False)][1:]  # skip the warm-up step
    return {"step_s": statistics.median(deltas)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny CPU model, few steps")
    parser.add_argument(
        "--model", default=None, help="policy directory or hub id (default: a tiny local model)"
    )
    parser.add_argument("--steps", type=int, default=None, help="timed steps per trainer (after one warm-up)")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step")
    parser.add_argument("-k", type=int, default=4, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--beta", type=float, default=0.05, help="KL coefficient (TRL RLOO's default)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.steps = args.steps or (8 if args.quick else 10)
    args.max_new_tokens = args.max_new_tokens or (32 if args.quick else 64)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tmp = Path(tempfile.mkdtemp(prefix="bench-policy-"))
    model = (
        args.model
        if args.model and not args.quick
        else str(init_tiny(tmp / "tiny", _prompts(200) * 2)["policy"])
    )
    model_name = args.model if args.model and not args.quick else "tiny-llama (local, random init)"
    print(
        f"model={model_name} device={device} prompts/step={args.prompts} k={args.k} "
        f"max_new_tokens={args.max_new_tokens} beta={args.beta} steps={args.steps}",
        flush=True,
    )

    figures: dict[str, Any] = {"model": model_name, "device": str(device)}
    ppo = run_prefloop(
        "ppo",
        model,
        argparse.Namespace(**{**vars(args), "k": 1, "prompts": args.prompts * args.k}),
        tmp / "ppo",
    )
    print(f"prefloop PPO  : {ppo}", flush=True)
    rloo = run_prefloop("rloo", model, args, tmp / "rloo")
    print(f"prefloop RLOO : {rloo}  peak_mem_mb={_peak_mb(device):.0f}", flush=True)
    figures.update(
        ppo_step_s=round(ppo["step_s"], 4),
        rloo_step_s=round(rloo["step_s"], 4),
        gen_tokens_per_s=round(rloo["gen_tokens_per_s"], 1),
        train_tokens_per_s=round(rloo["train_tokens_per_s"], 1),
        peak_mem_mb=round(_peak_mb(device)),
    )
    try:
        trl = run_trl_rloo(model, args, tmp / "trl")
        print(f"TRL RLOO      : {trl}", flush=True)
        figures["trl_rloo_step_s"] = round(trl["step_s"], 4)
        figures["speedup"] = round(trl["step_s"] / rloo["step_s"], 2)
    except Exception as exc:  # noqa: BLE001 - report why TRL could not run instead of failing the bench
        traceback.print_exc()
        print(f"TRL RLOO could not run here: {type(exc).__name__}: {exc}", flush=True)
        figures["trl_rloo_step_s"] = None
        figures["speedup"] = None
        figures["trl_error"] = f"{type(exc).__name__}: {exc}"[:300]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
