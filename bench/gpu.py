"""Benchmark: the GPU figures of the loop at a 0.5B decoder shape, printed as one JSON line.

Models are random-init from a Qwen2-0.5B-like config (24 layers, hidden 896, 14 query / 2 key-value heads,
MLP 4864, q/k/v biases, tied 151,936-entry embeddings) with a tokenizer trained here, so nothing is
downloaded. Reported:

* reward-model training (bf16 autocast, sequences of 512 tokens: a long shared prompt and short answers),
  K = 9 and K = 4, prefix sharing off and on: tokens/s, comparisons/s, step time (median after the first
  step), MFU and peak memory;
* TRL's RewardTrainer on the same groups expanded to pairs (same token ids, lr, comparisons per optimizer
  step, bf16): its comparisons/s and the ratio prefloop / TRL (skipped, with the reason, when TRL is not
  installed);
* policy sampling in process (K = 9, 256 new tokens): generated tokens/s;
* one PPO step (rollout, scoring, update): median seconds after the first step.

MFU is model FLOPs per step / step time / the chip's dense bf16 peak. Model FLOPs per forwarded token are
6 N + 12 L d T (PaLM, appendix B): N the parameters a token passes through (all but the input
embedding table), L layers, d the hidden size, T the mean length of the forwarded rows. With prefix
sharing the prompt is forwarded once per group, so fewer tokens are forwarded for the same comparisons.
`tokens_per_s` always counts every (prompt + answer) sequence in full, so the two settings compare directly.

    .venv/bin/python bench/gpu.py           # one H100/H200: under 8 minutes
    .venv/bin/python bench/gpu.py --tiny    # CPU smoke test with a tiny shape (CI), well under a minute

Progress goes to stderr; stdout carries only the JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import torch  # noqa: E402
from reward_model import PeakMemory, quiet_torch  # noqa: E402

from worker.training.groups import RankingGroup  # noqa: E402
from worker.training.policy import PolicyRun, PolicyTrainConfig, train_policy  # noqa: E402
from worker.training.reward import RewardTrainConfig, train_reward_model  # noqa: E402
from worker.training.reward.batching import collate, encode_groups  # noqa: E402
from worker.training.sampling import load_policy, rollout  # noqa: E402
from worker.training.tiny import default_texts, init_tiny_policy, init_tiny_reward, train_tokenizer  # noqa: E402

# Dense bf16 peak of the chips this is meant for (vendor data sheets), matched against the device name.
BF16_PEAK_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0, "L40S": 362.05}

_WORDS_TEXT = ("river mountain city people music summer winter ocean rain sun moon friend family garden letter "
               "report budget chapter review question answer teacher student morning evening window table paper "
               "careful quiet bright heavy simple modern ancient gentle honest useful")
WORDS = _WORDS_TEXT.split()


@dataclass(frozen=True)
class Shape:
    """The model shape and the sizes of one benchmark run."""

    config: dict[str, Any]
    max_length: int
    answer_words: int
    batch_prompts: int
    rm_steps: int
    token_budget: int
    sample_prompts: int
    sample_tokens: int
    ppo_prompts: int
    ppo_tokens: int
    ppo_steps: int


FULL = Shape(
    config=dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                num_key_value_heads=2, vocab_size=151_936, max_position_embeddings=4096, rope_theta=1_000_000.0,
                rms_norm_eps=1e-6, attention_bias=True),
    max_length=512, answer_words=40, batch_prompts=8, rm_steps=6, token_budget=16_384,
    sample_prompts=16, sample_tokens=256, ppo_prompts=16, ppo_tokens=256, ppo_steps=3,
)
TINY = Shape(
    config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, attention_bias=True),
    max_length=48, answer_words=4, batch_prompts=1, rm_steps=3, token_budget=2048,
    sample_prompts=2, sample_tokens=8, ppo_prompts=2, ppo_tokens=6, ppo_steps=2,
)


def log(message: str) -> None:
    print(f"[gpu bench] {message}", file=sys.stderr, flush=True)


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def make_groups(n: int, k: int, shape: Shape, seed: int) -> list[RankingGroup]:
    """n groups of K answers under one long prompt; the prompt is cut to fit `max_length` by the trainer's
    own fitting (oldest tokens first), so every sequence is about `max_length` tokens."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        prompt = words(rng, shape.max_length)  # more words than tokens fit: the trainer fits it
        answers = [words(rng, shape.answer_words) + f" {j}" for j in range(k)]
        out.append(RankingGroup(prompt=prompt, completions=answers, ranks=list(range(1, k + 1)), prompt_id=str(i)))
    return out


def flops_per_token(config: dict[str, Any], n_params: int, mean_row: float) -> float:
    embedding = config["vocab_size"] * config["hidden_size"]
    return 6.0 * (n_params - embedding) + 12.0 * config["num_hidden_layers"] * config["hidden_size"] * mean_row


def chip_peak(override: float | None) -> tuple[str, float | None]:
    if not torch.cuda.is_available():
        return "cpu", None
    name = torch.cuda.get_device_name()
    if override:
        return name, override * 1e12
    for key, tflops in BF16_PEAK_TFLOPS.items():
        if key in name:
            return name, tflops * 1e12
    return name, None


def forwarded(groups: list[RankingGroup], tokenizer: Any, max_length: int, share: bool) -> tuple[int, int, int]:
    """(sequence tokens, forwarded token positions, forwarded rows) of one pass over `groups`."""
    tokens = positions = rows = 0
    for g in encode_groups(groups, tokenizer, max_length):
        tokens += sum(len(x) for x in g.input_ids)
        mb = collate([g], int(tokenizer.pad_token_id), share_prefix=share)
        positions += int(mb.attention_mask.sum())
        rows += int(mb.attention_mask.shape[0])
        if mb.prefix is not None:
            positions += int(mb.prefix.attention_mask.sum())
            rows += int(mb.prefix.attention_mask.shape[0])
    return tokens, positions, rows


def step_times() -> tuple[list[float], Any]:
    """A progress callback that timestamps the trainer's "step i/n" reports, and the list it fills."""
    stamps: list[float] = []

    def progress(_fraction: float, message: str) -> None:
        if message.startswith("step "):
            stamps.append(time.perf_counter())

    return stamps, progress


def median_step(stamps: list[float], start: float) -> float:
    deltas = [b - a for a, b in zip([start, *stamps], stamps, strict=False)]
    return statistics.median(deltas[1:] if len(deltas) > 1 else deltas)


def run_prefloop_rm(base: str, groups: list[RankingGroup], tokenizer: Any, shape: Shape, k: int, share: bool,
                    n_params: int, peak: float | None, out: Path) -> dict[str, Any]:
    config = RewardTrainConfig(base_model=base, lr=1e-5, epochs=1.0, batch_prompts=shape.batch_prompts,
                               max_steps=shape.rm_steps, token_budget=shape.token_budget, max_length=shape.max_length,
                               warmup_steps=0, val_fraction=0.0, share_prefix=share, bf16=True, seed=0)
    stamps, progress = step_times()
    with PeakMemory() as mem:
        start = time.perf_counter()
        result = train_reward_model(config, groups, None, out, progress=progress)
    step_s = median_step(stamps, start)
    tokens, positions, rows = forwarded(groups, tokenizer, shape.max_length, share)
    steps = int(result.metrics["steps"])
    per_step = len(groups) / max(steps, 1)  # groups per step (all steps are equal here)
    model_flops = flops_per_token(shape.config, n_params, positions / rows) * positions / len(groups) * per_step
    return {
        "k": k, "prefix_sharing": share, "steps": steps, "step_s": step_s,
        "tokens_per_s": tokens / len(groups) * per_step / step_s,
        "comparisons_per_s": math.comb(k, 2) * per_step / step_s,
        "forwarded_positions_per_step": positions / len(groups) * per_step,
        "mfu": model_flops / step_s / peak if peak else None,
        "peak_memory_mb": mem.peak / 2**20,
    }


def run_trl_rm(base: str, groups: list[RankingGroup], tokenizer: Any, shape: Shape, k: int,
               out: Path) -> dict[str, Any]:
    """TRL's RewardTrainer on the same groups as pairs: same token ids, comparisons per step, lr, bf16."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, TrainerCallback
    from trl import RewardConfig, RewardTrainer

    stamps: list[float] = []

    class Timer(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, *_: Any, **__: Any) -> None:
            stamps.append(time.perf_counter())

    chosen, rejected = [], []
    for g in encode_groups(groups, tokenizer, shape.max_length):
        for w, lo, _ in g.pairs:
            chosen.append(g.input_ids[w])
            rejected.append(g.input_ids[lo])
    pairs_per_step = shape.batch_prompts * math.comb(k, 2)
    # The micro-batch holds as many sequences as prefloop's token budget; the step as many comparisons.
    most = max(1, shape.token_budget // (2 * shape.max_length))
    accumulation = next(a for a in range(1, pairs_per_step + 1) if pairs_per_step % a == 0
                        and pairs_per_step // a <= most)
    per_device = pairs_per_step // accumulation
    cuda = torch.cuda.is_available()
    args = RewardConfig(
        output_dir=str(out), per_device_train_batch_size=per_device, gradient_accumulation_steps=accumulation,
        max_steps=shape.rm_steps, learning_rate=1e-5, lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch", seed=0, data_seed=0, disable_dropout=True,
        max_length=shape.max_length, bf16=cuda, save_strategy="no", report_to=[], logging_steps=10**9,
        dataloader_num_workers=0, disable_tqdm=True, use_cpu=not cuda, center_rewards_coefficient=0.01,
    )
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    dataset = Dataset.from_dict({"chosen_ids": chosen, "rejected_ids": rejected})
    trainer = RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                            callbacks=[Timer()])
    with PeakMemory() as mem:
        start = time.perf_counter()
        trainer.train()
    step_s = median_step(stamps, start)
    tokens_per_pair = (sum(len(x) for x in chosen) + sum(len(x) for x in rejected)) / len(chosen)
    pairs = per_device * accumulation
    return {"k": k, "steps": len(stamps), "step_s": step_s, "comparisons_per_s": pairs / step_s,
            "tokens_per_s": pairs * tokens_per_pair / step_s, "peak_memory_mb": mem.peak / 2**20,
            "pairs_per_step": pairs}


def run_sampling(policy: str, shape: Shape) -> dict[str, Any]:
    model, tokenizer = load_policy(policy)
    rng = random.Random(1)
    prompts = [words(rng, 24) for _ in range(shape.sample_prompts)]
    rollout(model, tokenizer, prompts[:2], 2, max_new_tokens=4, batch_size=2)  # warm-up: kernels, allocator
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    with PeakMemory() as mem:
        start = time.perf_counter()
        batch = rollout(model, tokenizer, prompts, 9, max_new_tokens=shape.sample_tokens, temperature=1.0,
                        batch_size=shape.sample_prompts, seed=0)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    generated = int(batch.response_mask.sum())
    return {"k": 9, "prompts": len(prompts), "max_new_tokens": shape.sample_tokens, "generated_tokens": generated,
            "seconds": seconds, "tokens_per_s": generated / seconds, "peak_memory_mb": mem.peak / 2**20,
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch.")}


def planted_reward(_prompts: Any, completions: Any, **_: Any) -> torch.Tensor:
    return torch.tensor([sum(ch in "aeiou" for ch in c) / max(len(c), 1) for c in completions])


def run_ppo(policy: str, shape: Shape, out: Path) -> dict[str, Any]:
    rng = random.Random(2)
    config = PolicyTrainConfig(algorithm="ppo", steps=shape.ppo_steps, rollout_batch_size=shape.ppo_prompts,
                               num_samples=1, max_new_tokens=shape.ppo_tokens, learning_rate=1e-6,
                               missing_eos_penalty=None, save_every=10_000,
                               generation_batch_size=shape.ppo_prompts)
    with PeakMemory() as mem:
        result = train_policy(PolicyRun(config, policy_path=policy, output_dir=out,
                                        prompts=[words(rng, 24) for _ in range(4 * shape.ppo_prompts)],
                                        reward_fn=planted_reward))
    times = [h["step_s"] for h in result.history]
    return {"prompts_per_step": shape.ppo_prompts, "max_new_tokens": shape.ppo_tokens,
            "step_s": statistics.median(times[1:] if len(times) > 1 else times), "steps": len(times),
            "peak_memory_mb": mem.peak / 2**20}


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Libraries print to stdout; the JSON line must be alone there."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shape on the CPU (smoke test)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the chip's dense bf16 peak (default: known chips)")
    parser.add_argument("--skip-trl", action="store_true", help="leave out the TRL comparison")
    args = parser.parse_args(argv)
    shape = TINY if args.tiny else FULL
    started = time.perf_counter()
    with stdout_to_stderr(), tempfile.TemporaryDirectory(prefix="prefloop-gpu-bench-") as tmp:
        device = quiet_torch(0)
        chip, peak = chip_peak(args.peak_tflops)
        work = Path(tmp)
        tokenizer = train_tokenizer(default_texts() + [" ".join(WORDS)] * 4, vocab_size=512)
        config = {**shape.config, "vocab_size": max(shape.config.get("vocab_size", 0), len(tokenizer))}
        shape = Shape(**{**shape.__dict__, "config": config})
        log(f"creating the models on {device}")
        reward_base = str(init_tiny_reward(work / "reward-base", tokenizer, **config))
        policy_base = str(init_tiny_policy(work / "policy-base", tokenizer, **config))
        n_params = _count(reward_base)
        report: dict[str, Any] = {"bench": "gpu", "tiny": args.tiny, "device": device, "chip": chip,
                                  "bf16_peak_tflops": peak / 1e12 if peak else None, "params": n_params,
                                  "max_length": shape.max_length, "reward_model": [], "trl": []}
        for k in (9, 4):
            groups = make_groups(shape.batch_prompts * shape.rm_steps, k, shape, seed=k)
            for share in (False, True):
                log(f"reward model K={k} prefix sharing {'on' if share else 'off'}")
                report["reward_model"].append(run_prefloop_rm(reward_base, groups, tokenizer, shape, k, share,
                                                              n_params, peak, work / f"rm-{k}-{share}"))
            if args.skip_trl:
                report["trl"].append({"k": k, "skipped": "--skip-trl"})
            elif importlib.util.find_spec("trl") is None:
                report["trl"].append({"k": k, "skipped": "trl is not installed (pip install 'prefloop[bench]')"})
            else:
                log(f"TRL RewardTrainer K={k}")
                trl = run_trl_rm(reward_base, groups, tokenizer, shape, k, work / f"trl-{k}")
                ours = {r["prefix_sharing"]: r for r in report["reward_model"] if r["k"] == k}
                trl["ratio_comparisons_per_s"] = {"sharing_off": ours[False]["comparisons_per_s"] / trl["comparisons_per_s"],
                                                  "sharing_on": ours[True]["comparisons_per_s"] / trl["comparisons_per_s"]}
                report["trl"].append(trl)
        log("policy sampling")
        report["sampling"] = run_sampling(policy_base, shape)
        log("PPO steps")
        report["ppo"] = run_ppo(policy_base, shape, work / "ppo")
        report["seconds"] = time.perf_counter() - started
    print(json.dumps(report), flush=True)
    return report


def _count(path: str) -> int:
    from safetensors import safe_open

    total = 0
    for file in Path(path).glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as fh:
            for name in fh.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
                total += math.prod(fh.get_slice(name).get_shape())
    return total


if __name__ == "__main__":
    main()
