"""`bench/gpu.py --tiny`, the CPU smoke test of the GPU benchmark: it runs to the end and prints one JSON line
with every section (reward model at K = 9 and 4 with prefix sharing off and on, TRL or the reason it was left
out, sampling, PPO), and prefix sharing forwards fewer positions for the same sequences."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_bench_tiny_prints_one_json_line(tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="2", TMPDIR=str(tmp_path))
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--tiny"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout[-2000:]
    report = json.loads(lines[0])
    assert report["tiny"] is True and report["params"] > 0 and report["max_length"] == 48

    runs = {(r["k"], r["prefix_sharing"]): r for r in report["reward_model"]}
    assert set(runs) == {(9, False), (9, True), (4, False), (4, True)}
    for run in runs.values():
        assert run["steps"] == 3 and run["step_s"] > 0 and run["tokens_per_s"] > 0 and run["comparisons_per_s"] > 0
        assert run["peak_memory_mb"] >= 0
        assert run["mfu"] is None or 0 < run["mfu"] < 1  # None on the CPU: no bf16 peak to divide by
    for k in (9, 4):
        assert runs[(k, True)]["forwarded_positions_per_step"] < runs[(k, False)]["forwarded_positions_per_step"]

    assert [t["k"] for t in report["trl"]] == [9, 4]
    for trl in report["trl"]:
        if "skipped" in trl:
            assert "trl is not installed" in trl["skipped"]
        else:
            assert trl["comparisons_per_s"] > 0 and trl["ratio_comparisons_per_s"]["sharing_on"] > 0
            assert trl["pairs_per_step"] == {9: 36, 4: 6}[trl["k"]]

    sampling = report["sampling"]
    assert sampling["k"] == 9 and 0 < sampling["generated_tokens"] <= 9 * sampling["prompts"] * 8
    assert sampling["tokens_per_s"] > 0
    assert report["ppo"]["steps"] == 2 and report["ppo"]["step_s"] > 0
