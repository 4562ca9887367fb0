"""Benchmark: reward-model training with and without prompt-prefix sharing, on long prompts.

Data: the InstructGPT TL;DR samples (100 Reddit posts, 12 summaries each; the posts are long, the
summaries short, the common case for summarisation and chat preference data). A simulated annotator ranks
K shown summaries by unigram F1 against the human reference summary. Both runs train the same tiny decoder
reward model (a local random-init Llama; prefix sharing needs a decoder with a KV cache) with the same
settings and seed; the only difference is `share_prefix`. Prints comparisons/s, tokens/s, the number of
token positions forwarded, peak memory, the largest loss-curve difference between the two runs (the same
computation, so it should be float noise), and held-out accuracy.

    .venv/bin/python bench/rm_prefix.py --quick      # CPU, about a minute

The last line printed is JSON: one object per K.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reward_model import PeakMemory, heldout_accuracy, quiet_torch  # noqa: E402

from worker.training.groups import RankingGroup, split_by_prompt  # noqa: E402
from worker.training.reward import RewardTrainConfig, train_reward_model  # noqa: E402
from worker.training.reward.batching import collate, encode_groups  # noqa: E402
from worker.training.reward.model import load_reward_model  # noqa: E402
from worker.training.tiny import default_texts, init_tiny_reward, train_tokenizer  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "instructgpt-samples" / "tldr_samples.csv"
_WORD = re.compile(r"[a-z0-9']+")


def unigram_f1(text: str, reference: str) -> float:
    """Unigram overlap F1 of a summary with the reference summary (the simulated annotator's taste)."""
    a, b = collections.Counter(_WORD.findall(text.lower())), collections.Counter(_WORD.findall(reference.lower()))
    overlap = sum((a & b).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / sum(a.values()), overlap / sum(b.values())
    return 2 * precision * recall / (precision + recall)


def load_posts(path: Path) -> list[tuple[str, list[tuple[str, float]]]]:
    """(post ending in 'TL;DR:', [(summary, F1 with the reference), ...]) per post."""
    by_post: dict[str, list[tuple[str, float]]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            summary = " " + row["sample"].strip()
            by_post.setdefault(row["context"], []).append((summary, unigram_f1(summary, row["ref_text"])))
    return [(post, summaries) for post, summaries in by_post.items() if len(summaries) >= 2]


def simulate(posts: list[tuple[str, list[tuple[str, float]]]], k: int, seed: int) -> list[RankingGroup]:
    """K random summaries per post, ranked by F1 (best first); equal scores tie."""
    rng = random.Random(seed)
    groups = []
    for i, (post, summaries) in enumerate(posts):
        shown = rng.sample(summaries, min(k, len(summaries)))
        distinct = sorted({s for _, s in shown}, reverse=True)
        ranks = [distinct.index(s) + 1 for _, s in shown]
        groups.append(RankingGroup(prompt=post, completions=[c for c, _ in shown], ranks=ranks, prompt_id=str(i)))
    return groups


def forwarded_positions(groups: list[RankingGroup], tokenizer: Any, args: argparse.Namespace, share: bool) -> int:
    """Token positions the model runs per epoch (padding excluded): full sequences, or prefixes once + suffixes."""
    total = 0
    for g in encode_groups(groups, tokenizer, args.max_length):
        mb = collate([g], int(tokenizer.pad_token_id), share_prefix=share)
        total += int(mb.attention_mask.sum()) + (int(mb.prefix.attention_mask.sum()) if mb.prefix is not None else 0)
    return total


def run(base: str, train: list[RankingGroup], heldout: list[RankingGroup], args: argparse.Namespace, out: Path,
        share: bool) -> dict[str, Any]:
    config = RewardTrainConfig(
        base_model=base, lr=args.lr, epochs=args.epochs, batch_prompts=args.batch_prompts, token_budget=10**9,
        max_length=args.max_length, seed=args.seed, share_prefix=share,
    )
    with PeakMemory() as mem:
        result = train_reward_model(config, train, None, out)
    model, tok = load_reward_model(result.checkpoint)  # type: ignore[arg-type]
    m = result.metrics
    return {
        "train_seconds": m["train_seconds"], "comparisons_per_s": m["comparisons_per_s"],
        "tokens_per_s": m["tokens_per_s"], "peak_memory_mb": mem.peak / 2**20, "loss_curve": m["loss_curve"],
        "positions": forwarded_positions(train, tok, args, share) * args.epochs,
        "accuracy": heldout_accuracy(model, tok, heldout, args.max_length),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--k", type=int, nargs="+", default=[4, 9])
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-prompts", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--heldout-fraction", type=float, default=0.2)
    parser.add_argument("--max-posts", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=None,
                        help="width of a wider model than the tiny one (intermediate 3x, heads of 64)")
    parser.add_argument("--layers", type=int, default=None, help="layers of the wider model")
    parser.add_argument("--quick", action="store_true", help="fewer posts and one epoch (about a minute on CPU)")
    args = parser.parse_args(argv)
    if args.quick:
        args.max_posts = args.max_posts or 60
        args.epochs = 1.0

    device = quiet_torch(args.seed)
    posts = load_posts(args.data)[: args.max_posts]
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tokenizer = train_tokenizer(default_texts() + [p + c for p, cs in posts for c, _ in cs], vocab_size=2048)
        wider: dict[str, int] = {}
        if args.hidden:
            heads = max(1, args.hidden // 64)
            wider = {"hidden_size": args.hidden, "intermediate_size": 3 * args.hidden, "num_attention_heads": heads,
                     "num_key_value_heads": heads}
        if args.layers:
            wider["num_hidden_layers"] = args.layers
        base = str(init_tiny_reward(work / "reward", tokenizer, seed=args.seed, **wider))
        n_params = sum(p.numel() for p in load_reward_model(base)[0].parameters())
        for k in args.k:
            groups = simulate(posts, k, args.seed + k)
            train, heldout = split_by_prompt(groups, args.heldout_fraction, seed=args.seed)
            print(f"\nK={k}: {len(train)} train posts ({sum(len(g.pairs()) for g in train)} comparisons), "
                  f"{len(heldout)} held-out; max_length={args.max_length}; {n_params / 1e6:.1f}M parameters; device={device}",
                  flush=True)
            results = {}
            for share in (False, True):
                name = "shared" if share else "full"
                t0 = time.perf_counter()
                r = results[name] = run(base, train, heldout, args, work / f"{name}{k}", share)
                print(f"  {name:6s} {r['comparisons_per_s']:8.1f} comparisons/s {r['tokens_per_s']:9.0f} tokens/s "
                      f"{r['positions']:10.0f} positions  train {r['train_seconds']:6.1f}s "
                      f"(wall {time.perf_counter() - t0:5.1f}s) peak mem {r['peak_memory_mb']:7.1f} MB "
                      f"held-out acc {r['accuracy']:.3f}", flush=True)
            full, shared = results["full"], results["shared"]
            drift = max(abs(a - b) for a, b in zip(full["loss_curve"], shared["loss_curve"], strict=True))
            summary.append({
                "k": k,
                "full_comparisons_per_s": round(full["comparisons_per_s"], 2),
                "shared_comparisons_per_s": round(shared["comparisons_per_s"], 2),
                "speedup": round(shared["comparisons_per_s"] / full["comparisons_per_s"], 2),
                "positions_ratio": round(full["positions"] / shared["positions"], 2),
                "full_peak_memory_mb": round(full["peak_memory_mb"], 1),
                "shared_peak_memory_mb": round(shared["peak_memory_mb"], 1),
                "max_loss_difference": drift,
                "full_accuracy": round(full["accuracy"], 4),
                "shared_accuracy": round(shared["accuracy"], 4),
                "parameters": n_params,
                "device": device,
            })
            print(f"  speedup {summary[-1]['speedup']}x, {summary[-1]['positions_ratio']}x fewer positions, "
                  f"largest loss-curve difference {drift:.2e}", flush=True)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
