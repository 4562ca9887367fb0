"""PPO and RLOO on a tiny model with a planted reward: reward rises, KL stays bounded, beta acts, resume is exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.policy.policy_helpers import (
    assert_same_checkpoint,
    make_prompts,
    run_planted,
    stop_after,
)
from worker.training.checkpoint import verify_checkpoint
from worker.training.policy import PolicyRun, PolicyTrainConfig, PolicyTrainResult, train_policy

TRAIN_PROMPTS = make_prompts(64, seed=1)
HELDOUT = make_prompts(32, seed=2)
KL_BUDGET = 12.0  # nats per sequence of <= 12 tokens


def _cfg(algorithm: str, **kw: object) -> PolicyTrainConfig:
    base: dict[str, object] = dict(
        algorithm=algorithm,
        steps=30,
        learning_rate=3e-3,
        rollout_batch_size=8,
        max_new_tokens=12,
        missing_eos_penalty=None,
        save_every=1000,
        eval_max_prompts=32,
        seed=0,
    )
    if algorithm == "ppo":
        base.update(ppo_epochs=2, minibatch_size=4)
    base.update(kw)
    return PolicyTrainConfig(**base)  # type: ignore[arg-type]


def _run(tiny: dict[str, Path], out: Path, cfg: PolicyTrainConfig, **kw: object) -> PolicyTrainResult:
    return run_planted(tiny, out, cfg, TRAIN_PROMPTS, HELDOUT, **kw)  # type: ignore[no-any-return]


@pytest.mark.parametrize("algorithm", ["rloo", "ppo"])
def test_planted_reward_rises_within_kl_budget(
    tiny_models: dict[str, Path], tmp_path: Path, algorithm: str
) -> None:
    # PPO's clipped updates move slower than RLOO's: on this tiny model 30 steps sit at the edge of the bar
    # (+0.034 once completions decode without stray replacement characters), 40 clear it with room (+0.078).
    result = _run(tiny_models, tmp_path, _cfg(algorithm, steps=40 if algorithm == "ppo" else 30))
    before, after = result.metrics["before"], result.metrics["after"]
    assert before["kl"] == pytest.approx(0.0, abs=1e-4)
    assert after["reward_mean"] > before["reward_mean"] + 0.05, (before, after)
    assert 0.0 < after["kl"] < KL_BUDGET
    assert result.checkpoint is not None
    meta = verify_checkpoint(result.checkpoint)
    assert meta["config"]["algorithm"] == algorithm
    keys = {"reward_mean", "reward_std", "kl", "entropy", "response_length", "clip_frac", "approx_kl", "lr"}
    assert keys <= set(result.history[-1])
    if algorithm == "ppo":
        assert "value_loss" in result.history[-1]
        assert any(h["clip_frac"] > 0 for h in result.history)  # several minibatches/epochs: clipping happens


@pytest.mark.parametrize("algorithm", ["rloo", "ppo"])
def test_larger_beta_lowers_kl(tiny_models: dict[str, Path], tmp_path: Path, algorithm: str) -> None:
    low = _run(tiny_models, tmp_path / "low", _cfg(algorithm, kl_coef=0.0))
    high = _run(tiny_models, tmp_path / "high", _cfg(algorithm, kl_coef=1.0))
    assert high.metrics["after"]["kl"] < 0.5 * low.metrics["after"]["kl"]


def test_adaptive_kl_ptx_and_reward_model_value_init(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    cfg = _cfg(
        "ppo",
        steps=4,
        kl_controller="adaptive",
        kl_target=0.01,
        kl_horizon=10,
        ptx_coef=1.0,
        missing_eos_penalty=1.0,
    )
    result = train_policy(PolicyRun(
        cfg,
        policy_path=tiny_models["policy"],
        output_dir=tmp_path,
        prompts=TRAIN_PROMPTS,
        reward_model_path=tiny_models["reward"],
        ptx_texts=["the cat sat on the mat.", "we like to read books."],
    ))
    coefs = [h["kl_coef"] for h in result.history]
    assert coefs[0] == pytest.approx(0.02)
    # Step 1 samples from the reference itself (KL 0 < target): error -0.2 over 8 samples / horizon 10.
    assert coefs[1] == pytest.approx(0.02 * (1 - 0.2 * 8 / 10))
    for prev, nxt, h in zip(coefs, coefs[1:], result.history, strict=False):
        assert (nxt > prev) == (h["kl"] > 0.01)
    assert all("ptx_loss" in h for h in result.history)
    assert result.checkpoint is not None
    assert "reward model" in verify_checkpoint(result.checkpoint)["value_init"]


def test_interrupted_run_resumes_to_same_weights(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    cfg = _cfg("ppo", steps=4, save_every=2, lr_schedule="linear")
    full = _run(tiny_models, tmp_path / "full", cfg)
    # Stop at step index 3 (state saved after step 2 and at the stop).
    part = _run(tiny_models, tmp_path / "part", cfg, should_stop=stop_after(3))
    assert part.stopped and part.checkpoint is None and len(part.history) == 3
    resumed = _run(tiny_models, tmp_path / "part", cfg)
    assert len(resumed.history) == 4
    assert resumed.checkpoint is not None and full.checkpoint is not None
    assert_same_checkpoint(full.checkpoint, resumed.checkpoint)
    assert resumed.history[-1]["reward_mean"] == pytest.approx(full.history[-1]["reward_mean"], abs=1e-5)


def test_invalid_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="rloo needs num_samples"):
        PolicyTrainConfig(algorithm="rloo", num_samples=1).validate()
    with pytest.raises(ValueError, match="unknown policy config"):
        PolicyTrainConfig.from_dict({"algorithm": "ppo", "kl_cof": 0.1})


def test_kl_is_measured_against_the_given_reference(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """A second round starts from the first round's policy but keeps the SFT model as its reference: KL
    to it is already above zero before training, while a copy of the starting policy gives zero."""
    first = _run(tiny_models, tmp_path / "round1", _cfg("rloo", steps=4))
    assert first.checkpoint is not None
    tiny = {**tiny_models, "policy": first.checkpoint}
    cfg = _cfg("rloo", steps=1, learning_rate=1e-9)
    to_sft = _run(tiny, tmp_path / "round2-sft", cfg, reference_path=tiny_models["policy"])
    to_start = _run(tiny, tmp_path / "round2-previous", _cfg("rloo", steps=1, learning_rate=1e-9))
    assert to_start.metrics["before"]["kl"] == pytest.approx(0.0, abs=1e-4)
    assert to_sft.metrics["before"]["kl"] > 0.05, to_sft.metrics["before"]
    assert verify_checkpoint(to_sft.checkpoint or tmp_path)["reference_policy"] == str(tiny_models["policy"])


def test_kl_stop_ends_the_run_after_the_first_step_past_it(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """With kl_coef 0 the policy drifts freely; `kl_stop` ends training after the first step whose rollouts
    are past it, and that step's policy is the checkpoint (the loop sets it under its KL budget)."""
    free = _run(tiny_models, tmp_path / "free", _cfg("rloo", kl_coef=0.0, steps=12))
    kls = [h["kl"] for h in free.history]
    limit = 0.5 * max(kls)
    first_past = next(i for i, kl in enumerate(kls) if kl > limit) + 1
    assert first_past < len(kls), kls  # the free run goes on past the limit
    stopped = _run(tiny_models, tmp_path / "stopped", _cfg("rloo", kl_coef=0.0, steps=12, kl_stop=limit))
    assert stopped.metrics["kl_stopped_at"] == first_past == len(stopped.history)
    assert [h["kl"] for h in stopped.history] == pytest.approx(kls[:first_past])  # same seed, same steps
    assert stopped.checkpoint is not None and not stopped.metrics["stopped"]
    assert free.metrics["kl_stopped_at"] is None
