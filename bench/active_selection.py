"""Bench: does active selection make the reward model learn faster than random selection?

A simulated annotator ranks the shown completions of real_toxicity_samples.csv by `toxicity`
(lower is better, plus a little noise). Each round, every strategy picks a batch of prompts to be
labelled from the same pool (the K shown completions per prompt are fixed in advance, so only the
choice of prompts differs), refits its reward model on all comparisons so far, and is scored on
held-out prompts: the fraction of completion pairs (toxicity differing by > 0.05) ordered correctly.

Strategies: random; margin (app.quality.stats.active.select_by_margin on the current model's rewards);
ensemble (select_by_disagreement on 4 bootstrap refits).

The reward model is a lightweight stand-in for the neural one in worker/training/reward (which needs
torch and minutes per fit, too slow for many rounds on CPU and not allowed in `app`): a linear
Bradley-Terry model r(x) = w . phi(x) over hashed unigram+bigram counts of the completion, fitted by
L2-regularised logistic regression on feature differences (scipy L-BFGS).

Usage: python bench/active_selection.py [--quick] [--seeds N] [--rounds R] [--batch B]
Prints accuracy per round per strategy, then one JSON line of figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import optimize, sparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.quality.stats.active import select_by_disagreement, select_by_margin  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "instructgpt-samples" / "real_toxicity_samples.csv"
DIM = 2**14
K = 4
MIN_GAP = 0.05


def load(path: Path) -> tuple[list[str], dict[tuple[str, str], list[tuple[str, float]]]]:
    """Prompts keyed by (prompt_type, context) -> [(sample, toxicity)]; also the list of contexts."""
    prompts: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            prompts[(row["prompt_type"], row["context"])].append((row["sample"], float(row["toxicity"])))
    contexts = sorted({c for _, c in prompts})
    return contexts, dict(prompts)


def featurise(texts: list[str]) -> sparse.csr_matrix:
    """Hashed unigram + bigram counts, log-scaled, rows L2-normalised."""
    rows, cols, vals = [], [], []
    for i, t in enumerate(texts):
        toks = t.lower().split()
        grams = toks + [a + " " + b for a, b in zip(toks, toks[1:], strict=False)]
        counts: dict[int, float] = defaultdict(float)
        for g in grams:
            counts[zlib.crc32(g.encode()) % DIM] += 1.0
        counts[DIM - 1] += np.log1p(len(toks))  # a length feature
        norm = np.sqrt(sum(np.log1p(v) ** 2 for v in counts.values())) or 1.0
        for c, v in counts.items():
            rows.append(i)
            cols.append(c)
            vals.append(np.log1p(v) / norm)
    return sparse.csr_matrix((vals, (rows, cols)), shape=(len(texts), DIM))


def fit_bt(x: sparse.csr_matrix, win: np.ndarray, lose: np.ndarray, l2: float = 1.0) -> np.ndarray:
    """Linear Bradley-Terry: minimise sum log(1 + exp(-(r_win - r_lose))) + l2/2 |w|^2."""
    d = (x[win] - x[lose]).tocsr()

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        m = d @ w
        val = np.logaddexp(0.0, -m).sum() + 0.5 * l2 * w @ w
        grad = -(d.T @ (1.0 / (1.0 + np.exp(m)))) + l2 * w
        return float(val), grad

    res = optimize.minimize(loss, np.zeros(DIM), jac=True, method="L-BFGS-B", options={"maxiter": 200})
    return np.asarray(res.x)


def heldout_pairs(items: list[list[int]], tox: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(better, worse) completion indices of held-out prompts whose toxicity differs by > MIN_GAP."""
    better, worse = [], []
    for idx in items:
        for a in idx:
            for b in idx:
                if tox[a] + MIN_GAP < tox[b]:
                    better.append(a)
                    worse.append(b)
    return np.array(better), np.array(worse)


def run_seed(seed: int, rounds: int, batch: int, contexts: list[str], prompts: dict, x, tox, texts_of) -> dict:
    rng = np.random.default_rng(seed)
    ctx = list(contexts)
    rng.shuffle(ctx)
    held_ctx = set(ctx[: len(ctx) // 3])
    keys = sorted(prompts)
    pool = [k for k in keys if k[1] not in held_ctx]
    held = [texts_of[k] for k in keys if k[1] in held_ctx]
    hb, hw = heldout_pairs(held, tox)
    # the K completions each pool prompt would show, fixed for every strategy
    shown = {k: list(rng.choice(texts_of[k], size=K, replace=False)) for k in pool}
    pid = {k: i for i, k in enumerate(pool)}
    first = [pool[i] for i in rng.choice(len(pool), size=batch, replace=False)]
    curves: dict[str, list[float]] = {}
    for strategy in ("random", "margin", "ensemble"):
        srng = np.random.default_rng([seed, 1])
        labelled = list(first)
        win: list[int] = []
        lose: list[int] = []
        curve = []
        for rnd in range(rounds + 1):
            for k in labelled[len(labelled) - (batch if rnd else len(first)):]:
                noisy = {c: tox[c] + srng.normal(0, 0.02) for c in shown[k]}  # the annotator's noise
                order = sorted(shown[k], key=noisy.__getitem__)
                for i, a in enumerate(order):
                    for b in order[i + 1:]:
                        win.append(a)
                        lose.append(b)
            w = fit_bt(x, np.array(win), np.array(lose))
            r = x @ w
            curve.append(float(np.mean(r[hb] > r[hw])))
            if rnd == rounds:
                break
            done = set(labelled)
            rest = [k for k in pool if k not in done]
            if strategy == "random":
                pick = [rest[i] for i in srng.choice(len(rest), size=batch, replace=False)]
            elif strategy == "margin":
                temp = float(np.std(r)) or 1.0
                pick = select_by_margin({pid[k]: r[shown[k]].tolist() for k in rest}, batch, temperature=temp)
                pick = [pool[i] for i in pick]
            else:
                members = []
                n_cmp = len(win)
                for _ in range(4):
                    boot = srng.integers(0, n_cmp, n_cmp)
                    members.append(x @ fit_bt(x, np.array(win)[boot], np.array(lose)[boot]))
                temp = float(np.std(r)) or 1.0
                pick = select_by_disagreement(
                    {pid[k]: [m[shown[k]].tolist() for m in members] for k in rest}, batch, temperature=temp
                )
                pick = [pool[i] for i in pick]
            labelled.extend(pick)
        curves[strategy] = curve
    return curves


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 seeds x 6 rounds (< 2 minutes)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    seeds, rounds = (2, 6) if args.quick else (args.seeds, args.rounds)
    t0 = time.time()
    contexts, prompts = load(args.data)
    texts, tox_list, texts_of = [], [], {}
    for k in sorted(prompts):
        texts_of[k] = list(range(len(texts), len(texts) + len(prompts[k])))
        for s, t in prompts[k]:
            texts.append(s)
            tox_list.append(t)
    x, tox = featurise(texts), np.array(tox_list)
    per_seed = [run_seed(s, rounds, args.batch, contexts, prompts, x, tox, texts_of) for s in range(seeds)]
    mean = {s: np.mean([c[s] for c in per_seed], axis=0) for s in per_seed[0]}
    print(f"{'round':>5} {'labelled':>8} " + " ".join(f"{s:>9}" for s in mean))
    for rnd in range(rounds + 1):
        print(f"{rnd:>5} {args.batch * (rnd + 1):>8} " + " ".join(f"{mean[s][rnd]:9.3f}" for s in mean))
    summary = {
        "bench": "active_selection",
        "seeds": seeds,
        "rounds": rounds,
        "batch_prompts": args.batch,
        "k_shown": K,
        "reward_model": "linear BT on hashed bag-of-words (numpy/scipy stand-in)",
        "accuracy": {s: [round(float(v), 4) for v in m] for s, m in mean.items()},
        "mean_accuracy_over_rounds": {s: round(float(np.mean(m[1:])), 4) for s, m in mean.items()},
        "final_accuracy": {s: round(float(m[-1]), 4) for s, m in mean.items()},
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
