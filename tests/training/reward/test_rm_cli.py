"""`prefloop rm train / eval / score` on a tiny model and planted data."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from worker.commands.rm import cli

from .conftest import planted_groups


def _write_rankings(path: Path, n: int, seed: int, prefix: str) -> Path:
    lines = [json.dumps({"prompt": g.prompt, "completions": g.completions, "ranks": g.ranks, "prompt_id": g.prompt_id})
             for g in planted_groups(n, seed=seed, prefix=prefix)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_eval_score(tiny_reward_dir: Path, tmp_path: Path) -> None:
    data = _write_rankings(tmp_path / "train.jsonl", 120, 0, "t")
    runner = CliRunner()
    out = tmp_path / "rm"
    result = runner.invoke(cli, ["train", str(tiny_reward_dir), str(data), "-o", str(out), "--epochs", "2",
                                 "--lr", "3e-3", "--batch-prompts", "8", "--heldout-fraction", "0.2"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["heldout"]["n_groups"] == 24 and metrics["train_groups"] == 96

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps({"prompt": g.prompt, "chosen": g.completions[g.ranks.index(1)],
                                           "rejected": g.completions[g.ranks.index(2)]})
                               for g in planted_groups(30, seed=2, prefix="e")))
    result = runner.invoke(cli, ["eval", str(out), str(pairs)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n_pairs"] == 30 and report["accuracy"] >= 0.9

    scored = tmp_path / "scores.jsonl"
    result = runner.invoke(cli, ["score", str(out / "model"), str(pairs), "-o", str(scored)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in scored.read_text().splitlines()]
    assert len(rows) == 30 and all(len(r["rewards"]) == 2 for r in rows)


def test_bad_file_and_bad_checkpoint_exit_cleanly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\n')
    result = CliRunner().invoke(cli, ["eval", str(tmp_path), str(bad)])
    assert result.exit_code == 2 and "bad.jsonl:1: field 'completions'" in result.output
    good = _write_rankings(tmp_path / "ok.jsonl", 2, 0, "t")
    result = CliRunner().invoke(cli, ["eval", str(tmp_path / "nowhere"), str(good)])
    assert result.exit_code == 2 and "not a reward-model checkpoint" in result.output
