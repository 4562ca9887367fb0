"""The CLI side of the loop: `projects configure`, `loop run|status`, and `python -m app.cli worker --once`
(the exact command `prefloop serve --with-worker` spawns) running a real sampling job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.cli import cli
from app.models import Completion, Job
from app.projects.service import settings_of
from tests.conftest import REPO
from tests.factories import make_project, make_prompt


def test_configure_loop_and_worker_once(db: Session, cli_env: dict[str, str], tiny_models: dict[str, Path]) -> None:
    project = make_project(db, k_min=2, k_max=3)
    for _ in range(2):
        make_prompt(db, project, 0)
    db.commit()
    runner = CliRunner()
    result = runner.invoke(cli, ["projects", "configure", str(project.id), "--policy-model", str(tiny_models["policy"]),
                                 "--reward-model", str(tiny_models["reward"]), "--algorithm", "rloo",
                                 "--retrain-every", "5", "--prompts-per-round", "2", "--schedule",
                                 "--max-new-tokens", "6", "--json"])
    assert result.exit_code == 0, result.output
    db.expire_all()
    settings = settings_of(db.get(type(project), project.id))  # type: ignore[arg-type]
    db.commit()
    assert settings.training.algorithm == "rloo" and settings.training.policy_model == str(tiny_models["policy"])
    assert (settings.schedule.enabled, settings.schedule.retrain_every, settings.sampling.max_new_tokens) == (True, 5, 6)

    missing = runner.invoke(cli, ["projects", "configure", str(project.id), "--policy-model", "/nope/model"])
    assert missing.exit_code != 0 and "no such model directory" in missing.output
    bad = runner.invoke(cli, ["projects", "configure", str(project.id), "--algorithm", "sft"])
    assert bad.exit_code != 0 and "algorithm" in bad.output

    run = runner.invoke(cli, ["loop", "run", str(project.id), "--json"])
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["kind"] == "sample_completions"

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLOOP_")} | cli_env | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "app.cli", "worker", "--once", "--poll-seconds", "0.1"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "stopped after 1 job(s)" in done.stdout
    job = db.scalars(select(Job).where(Job.project_id == project.id)).one()
    assert job.status == "succeeded", job.error
    assert len(db.scalars(select(Completion).where(Completion.source == "model")).all()) == 6
    db.commit()
    status = runner.invoke(cli, ["loop", "status", str(project.id), "--json"])
    assert status.exit_code == 0 and json.loads(status.stdout)["active"] == {"policy": "policy-v0", "reward": None}
    nothing = runner.invoke(cli, ["loop", "run", str(project.id)])
    assert nothing.exit_code != 0 and "nothing to do" in nothing.output
    hub = runner.invoke(cli, ["projects", "configure", str(project.id), "--reward-model", "org/reward-model",
                              "--rloo-k", "3", "--kl-beta", "0.05", "--json"])
    assert hub.exit_code == 0, hub.output  # hub ids are the worker's to resolve, not refused here
    assert '"reward_model": "org/reward-model"' in hub.output and '"rloo_k": 3' in hub.output


def test_configure_ai_rankings(db: Session, cli_env: dict[str, str]) -> None:
    project = make_project(db)
    db.commit()
    assert settings_of(project).training.ai_rankings == "exclude"
    runner = CliRunner()
    result = runner.invoke(cli, ["projects", "configure", str(project.id), "--ai-rankings", "llm-judge", "--json"])
    assert result.exit_code == 0, result.output
    db.expire_all()
    assert settings_of(db.get(type(project), project.id)).training.ai_rankings == "llm-judge"  # type: ignore[arg-type]
    db.commit()
    bad = runner.invoke(cli, ["projects", "configure", str(project.id), "--ai-rankings", "reward-model"])
    assert bad.exit_code != 0 and "ai_rankings" in bad.output, bad.output
