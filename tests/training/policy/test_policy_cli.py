"""The `policy` CLI: sample prints JSONL, train prints metrics JSON and writes a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tests.training.policy.policy_helpers import make_prompts
from worker.commands.policy import cli


def test_sample_and_train_sft(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(make_prompts(3, 1)) + "\n")
    runner = CliRunner()
    res = runner.invoke(
        cli, ["sample", str(tiny_models["policy"]), str(prompts), "-k", "2", "--max-new-tokens", "5"]
    )
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert len(lines) == 3 and all(len(x["completions"]) == 2 for x in lines)

    demos = tmp_path / "demos.jsonl"
    demos.write_text("\n".join(json.dumps({"prompt": p, "completion": "ok."}) for p in make_prompts(8, 2)))
    res = runner.invoke(
        cli,
        [
            "train",
            str(tiny_models["policy"]),
            "-o",
            str(tmp_path / "out"),
            "--algorithm",
            "sft",
            "--demonstrations",
            str(demos),
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--lr",
            "1e-3",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads([x for x in res.stdout.splitlines() if x.startswith("{")][-1])
    assert out["metrics"]["steps"] == 2 and Path(out["checkpoint"]).is_dir()

    res = runner.invoke(
        cli,
        [
            "train",
            str(tiny_models["policy"]),
            "-o",
            str(tmp_path / "bad"),
            "--algorithm",
            "rloo",
            "-k",
            "1",
            "--prompts",
            str(prompts),
        ],
    )
    assert res.exit_code != 0 and "num_samples" in res.output
