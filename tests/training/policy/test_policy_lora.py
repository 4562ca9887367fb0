"""LoRA policy training (`lora_r > 0`, needs peft): only adapters train, the reference is the untouched base,
the saved checkpoint is a merged plain transformers model, and an interrupted LoRA run resumes exactly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

import worker.training.policy.train as train_module
from tests.training.policy.policy_helpers import (
    assert_same_checkpoint,
    make_prompts,
    run_planted,
    stop_after,
)
from tests.training.policy.test_policy_offline import _groups
from worker.training.checkpoint import verify_checkpoint
from worker.training.policy import PolicyRun, PolicyTrainConfig, PolicyTrainResult, train_policy
from worker.training.policy.batching import encode_completion, pack, response_forward
from worker.training.policy.models import load_train_models, reference_mode
from worker.training.sampling import encode_prompts

CPU = torch.device("cpu")
TRAIN_PROMPTS = make_prompts(16, seed=1)
HELDOUT = make_prompts(8, seed=2)


def _probe(policy_dir: Path) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A fixed packed batch (chat-formatted prompts + completions) to compare per-token log-probs on."""
    tok = AutoTokenizer.from_pretrained(str(policy_dir))
    prompts = encode_prompts(tok, ["write about the cat", "write about rain and sun"], 64, True)
    completions = [encode_completion(tok, t, 16) for t in ("yes the cat sat", "no rain today")]
    ids, attn, resp = pack(prompts, completions, tok.pad_token_id, CPU)
    return ids, attn, resp.shape[1]


@torch.no_grad()
def _logprobs(model: torch.nn.Module, probe: tuple[torch.Tensor, torch.Tensor, int]) -> torch.Tensor:
    ids, attn, width = probe
    return response_forward(model, ids, attn, width)[0]


def _lora_cfg(algorithm: str, **kw: Any) -> PolicyTrainConfig:
    base: dict[str, Any] = {"lora_r": 4, "lora_alpha": 16, "save_every": 1000, "seed": 0}
    return PolicyTrainConfig(algorithm=algorithm, **{**base, **kw})  # type: ignore[arg-type]


@torch.no_grad()
def _perturb_adapters(policy: torch.nn.Module) -> None:
    """Random lora_B weights (peft initialises them to zero, i.e. adapters that do nothing)."""
    gen = torch.Generator().manual_seed(0)
    for name, p in policy.named_parameters():
        if "lora_B" in name:
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("gradient_checkpointing", [False, True])
def test_lora_trains_only_adapters(tiny_models: dict[str, Path], gradient_checkpointing: bool) -> None:
    cfg = _lora_cfg("sft", gradient_checkpointing=gradient_checkpointing)
    policy, ref = load_train_models(cfg, tiny_models["policy"], CPU)
    assert ref is None  # the reference is the policy with adapters disabled, not a second copy
    trainable = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    frozen = {n: p for n, p in policy.named_parameters() if not p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert not any("lora_" in n for n in frozen)
    assert sum(p.numel() for p in trainable.values()) < 0.1 * sum(p.numel() for p in frozen.values())

    # Gradients reach every adapter (also through checkpointed layers) and no base weight. lora_B starts at
    # zero, which zeroes lora_A's gradient, so give the adapters a nonzero state first.
    _perturb_adapters(policy)
    policy.train()
    response_forward(policy, *_probe(tiny_models["policy"]))[0].sum().backward()
    for name, p in trainable.items():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    assert all(p.grad is None for p in frozen.values())


def test_lora_reference_is_the_untouched_base(tiny_models: dict[str, Path]) -> None:
    policy, ref = load_train_models(_lora_cfg("dpo"), tiny_models["policy"], CPU)
    probe = _probe(tiny_models["policy"])
    base = AutoModelForCausalLM.from_pretrained(str(tiny_models["policy"]), dtype=torch.float32).eval()
    base_lp = _logprobs(base, probe)
    torch.testing.assert_close(_logprobs(policy, probe), base_lp)  # lora_B starts at zero
    _perturb_adapters(policy)
    tuned_lp = _logprobs(policy, probe)
    assert float((tuned_lp - base_lp).abs().max()) > 1e-2  # the adapters now change the function

    with reference_mode(policy, ref) as reference:
        torch.testing.assert_close(_logprobs(reference, probe), base_lp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(_logprobs(policy, probe), tuned_lp)  # adapters back on afterwards


def test_lora_dpo_learns_and_saves_a_merged_model(
    tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = _probe(tiny_models["policy"])
    seen: list[tuple[type, torch.Tensor]] = []
    evaluate = train_module.evaluate_heldout

    def spy(rt: Any, *args: Any) -> dict[str, float]:
        # The last evaluation runs on the trained, not yet merged policy: keep its log-probs.
        seen.append((type(rt.policy), _logprobs(rt.policy, probe)))
        return evaluate(rt, *args)

    monkeypatch.setattr(train_module, "evaluate_heldout", spy)
    cfg = _lora_cfg("dpo", epochs=3, steps=None, batch_size=4, learning_rate=2e-2, micro_batch_size=8)
    result = train_policy(PolicyRun(
        cfg,
        policy_path=tiny_models["policy"],
        output_dir=tmp_path,
        groups=_groups(24, seed=3),
        heldout_groups=_groups(12, seed=4),
    ))
    before, after = result.metrics["before"], result.metrics["after"]
    assert before["dpo_accuracy"] == pytest.approx(0.5) and before["dpo_reward_margin"] == pytest.approx(0.0)
    assert after["dpo_accuracy"] > 0.8
    assert after["dpo_reward_margin"] > 0.05
    assert result.history[-1]["loss"] < result.history[0]["loss"]

    assert result.checkpoint is not None
    verify_checkpoint(result.checkpoint)
    assert not (result.checkpoint / "adapter_config.json").exists()
    merged = load_file(str(result.checkpoint / "model.safetensors"))
    start = load_file(str(tiny_models["policy"] / "model.safetensors"))
    assert set(merged) == set(start)  # same keys as the base: no lora_A/lora_B, no base_model. prefix
    moved = {k: float((merged[k] - start[k]).abs().max()) for k in start}
    assert all(moved[k] > 1e-3 for k in start if k.endswith("proj.weight"))  # every targeted linear
    assert all(moved[k] == 0 for k in start if "norm" in k or "embed" in k)  # untargeted weights untouched

    # The merged plain model computes what the trained adapters did, which is not what the base did.
    model = AutoModelForCausalLM.from_pretrained(str(result.checkpoint), dtype=torch.float32).eval()
    assert isinstance(model, LlamaForCausalLM)
    trained_type, trained_lp = seen[-1]
    assert issubclass(trained_type, PeftModel)
    torch.testing.assert_close(_logprobs(model, probe), trained_lp, atol=1e-4, rtol=1e-4)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_models["policy"]), dtype=torch.float32).eval()
    assert float((trained_lp - _logprobs(base, probe)).abs().max()) > 1e-2


def _run(tiny: dict[str, Path], out: Path, cfg: PolicyTrainConfig, **kw: Any) -> PolicyTrainResult:
    return run_planted(tiny, out, cfg, TRAIN_PROMPTS, HELDOUT, **kw)  # type: ignore[no-any-return]


def _rloo_cfg(**kw: Any) -> PolicyTrainConfig:
    return _lora_cfg(
        "rloo",
        learning_rate=1e-2,
        rollout_batch_size=4,
        max_new_tokens=12,
        missing_eos_penalty=None,
        eval_max_prompts=8,
        **kw,
    )


def test_lora_rloo_completes_steps(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    result = _run(tiny_models, tmp_path, _rloo_cfg(steps=2))
    assert len(result.history) == 2
    assert all(torch.isfinite(torch.tensor([h["policy_loss"], h["entropy"]])).all() for h in result.history)
    assert result.metrics["before"]["kl"] == pytest.approx(0.0, abs=1e-5)  # policy == reference at start
    assert result.history[0]["kl"] == pytest.approx(0.0, abs=1e-5)
    assert result.history[1]["kl"] != pytest.approx(0.0, abs=1e-6)  # step 1 moved the adapters
    assert result.checkpoint is not None
    assert verify_checkpoint(result.checkpoint)["config"]["lora_r"] == 4
    merged = load_file(str(result.checkpoint / "model.safetensors"))
    start = load_file(str(tiny_models["policy"] / "model.safetensors"))
    assert set(merged) == set(start)
    assert max(float((merged[k] - start[k]).abs().max()) for k in start) > 1e-4


def test_interrupted_lora_run_resumes_to_same_weights(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    cfg = _rloo_cfg(steps=4, save_every=2, lr_schedule="linear")
    full = _run(tiny_models, tmp_path / "full", cfg)
    # Stop at step index 3 (state saved after step 2 and at the stop).
    part = _run(tiny_models, tmp_path / "part", cfg, should_stop=stop_after(3))
    assert part.stopped and part.checkpoint is None and len(part.history) == 3
    state = tmp_path / "part" / train_module.STATE_DIR
    assert (state / "adapter_model.safetensors").is_file() and not (state / "model.safetensors").exists()

    with pytest.raises(ValueError, match="lora_r=4, not 0"):  # full fine-tuning cannot resume adapters
        _run(tiny_models, tmp_path / "part", replace(cfg, lora_r=0))

    resumed = _run(tiny_models, tmp_path / "part", cfg)
    assert len(resumed.history) == 4
    assert resumed.checkpoint is not None and full.checkpoint is not None
    assert_same_checkpoint(full.checkpoint, resumed.checkpoint)
    for h_full, h_resumed in zip(full.history, resumed.history, strict=True):
        assert h_resumed["reward_mean"] == pytest.approx(h_full["reward_mean"], abs=1e-5)
        assert h_resumed["kl"] == pytest.approx(h_full["kl"], abs=1e-5)
