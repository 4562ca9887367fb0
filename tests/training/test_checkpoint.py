"""Tests for atomic checkpoints and resumable training state (worker/training/checkpoint.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from worker.training.checkpoint import (
    CheckpointError,
    has_training_state,
    load_meta,
    load_training_state,
    save_checkpoint,
    save_training_state,
    verify_checkpoint,
)
from worker.training.tiny import default_texts, init_tiny_reward, train_tokenizer

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_tiny_reward(tmp_path_factory.mktemp("m") / "reward", train_tokenizer(default_texts()))


def _load(path: Path):  # type: ignore[no-untyped-def]
    return AutoModelForSequenceClassification.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_round_trip_and_replace(tmp_path: Path, reward_dir: Path) -> None:
    model, tok = _load(reward_dir)
    out = save_checkpoint(tmp_path / "ckpt", model, tok, {"step": 1}, extra_files={"notes.txt": b"hello"})
    meta = verify_checkpoint(out)
    assert meta["step"] == 1 and "model.safetensors" in meta["sha256"] and "notes.txt" in meta["sha256"]
    reloaded, _ = _load(out)
    for a, b in zip(model.state_dict().values(), reloaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    save_checkpoint(tmp_path / "ckpt", model, tok, {"step": 2})
    assert load_meta(out)["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temp or set-aside dirs left


def test_verify_names_corrupted_and_missing_files(tmp_path: Path, reward_dir: Path) -> None:
    model, tok = _load(reward_dir)
    out = save_checkpoint(tmp_path / "ckpt", model, tok, {})
    weights = out / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch for .*model.safetensors"):
        verify_checkpoint(out)
    weights.unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        verify_checkpoint(out)
    (out / "meta.json").unlink()
    with pytest.raises(CheckpointError, match="meta.json is missing"):
        verify_checkpoint(out)


def test_unwritable_location_raises_checkpoint_error(tmp_path: Path, reward_dir: Path) -> None:
    model, tok = _load(reward_dir)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*file/ckpt.*(File exists|Not a directory)"):
        save_checkpoint(blocker / "ckpt", model, tok, {})
    if os.geteuid() != 0:  # root ignores directory permissions
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(CheckpointError, match="Permission denied"):
                save_checkpoint(ro / "ckpt", model, tok, {})
        finally:
            ro.chmod(0o700)


def test_disk_full_keeps_previous_checkpoint(tmp_path: Path, reward_dir: Path) -> None:
    model, tok = _load(reward_dir)
    out = save_checkpoint(tmp_path / "ckpt", model, tok, {"version": 1})

    class DiskFull(torch.nn.Module):
        def save_pretrained(self, directory: Path, **_: object) -> None:
            (Path(directory) / "model.safetensors").write_bytes(b"partial")
            raise OSError(28, "No space left on device", str(directory))

    with pytest.raises(CheckpointError, match="No space left on device"):
        save_checkpoint(out, DiskFull(), tok, {"version": 2})
    assert verify_checkpoint(out)["version"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def _fsyncs_of_one_save(model: object, tok: object, monkeypatch: pytest.MonkeyPatch) -> int:
    """How many fsyncs a save makes: one per file (their number depends on the tokenizer files the installed
    transformers writes), then the temp dir, then the parent dir after the rename."""
    calls = 0
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        nonlocal calls
        calls += 1
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    with tempfile.TemporaryDirectory() as scratch:
        save_checkpoint(Path(scratch) / "count", model, tok, {"version": 0})
    monkeypatch.setattr(os, "fsync", real_fsync)
    return calls


# Where the child dies, counted from the end of a save: the first file, a middle file, the temp dir
# (the new checkpoint is complete but not yet live), the parent dir after the rename (the new one is live).
@pytest.mark.parametrize(("crash_point", "expected_version"), [("first", 1), ("middle", 1), ("temp_dir", 1), ("parent", 2)])
def test_kill_mid_write_leaves_a_complete_checkpoint(
    tmp_path: Path, reward_dir: Path, crash_point: str, expected_version: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tok = _load(reward_dir)
    total = _fsyncs_of_one_save(model, tok, monkeypatch)
    crash_at_fsync = {"first": 1, "middle": max(2, (total - 2) // 2), "temp_dir": total - 1, "parent": total}[crash_point]
    out = save_checkpoint(tmp_path / "ckpt", model, tok, {"version": 1})
    # A child process starts overwriting the checkpoint and dies abruptly (os._exit) in the middle of it.
    script = textwrap.dedent(
        f"""
        import os
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from worker.training import checkpoint
        model = AutoModelForSequenceClassification.from_pretrained({str(reward_dir)!r})
        tok = AutoTokenizer.from_pretrained({str(reward_dir)!r})
        calls = 0
        real_fsync = os.fsync
        def dying_fsync(fd):
            global calls
            calls += 1
            if calls == {crash_at_fsync}:
                os._exit(9)
            real_fsync(fd)
        os.fsync = dying_fsync
        checkpoint.save_checkpoint({str(out)!r}, model, tok, {{"version": 2}})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    assert json.loads((out / "meta.json").read_text())["version"] == expected_version
    assert verify_checkpoint(out)["version"] == expected_version
    _load(out)
    # The abandoned temp dir never has the final name and is cleaned up by the next save.
    save_checkpoint(out, model, tok, {"version": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_training_state_round_trip(tmp_path: Path, reward_dir: Path) -> None:
    model, tok = _load(reward_dir)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    model(**tok(["hello there"], return_tensors="pt")).logits.sum().backward()
    opt.step()
    sched.step()
    state_dir = tmp_path / "state"
    assert not has_training_state(state_dir)
    save_training_state(state_dir, model, tok, {"run": "x"}, step=7, optimizer=opt, scheduler=sched, extra={"seen": [1, 2]})
    expected_next = torch.rand(3)

    torch.manual_seed(123)  # scramble the RNG; loading must restore it
    model2, _ = _load(reward_dir)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-3)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 1.0 / (s + 1))
    assert has_training_state(state_dir)
    state = load_training_state(state_dir, model2, opt2, sched2)
    assert state.step == 7 and state.extra == {"seen": [1, 2]} and state.meta["run"] == "x"
    assert torch.equal(torch.rand(3), expected_next)
    assert sched2.last_epoch == sched.last_epoch
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"]) for k in s1)
