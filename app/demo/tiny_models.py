"""Give a project tiny local models (demo / CI): run `prefloop models init-tiny` in a child process and
point the project's settings at the result. The app never imports torch, so the worker's command does
the model work in its own process; this module only writes settings.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy.orm import Session

from app.db import create_db_engine, make_session_factory, unit_of_work
from app.models import Project
from app.projects import service as projects
from app.projects.schemas import ProjectUpdate
from app.registry import datasets
from app.settings import get_settings

# Small enough for a laptop CPU: a round of training takes seconds.
TINY_SETTINGS: dict[str, dict[str, object]] = {
    "sampling": {"max_new_tokens": 24, "temperature": 1.0, "top_p": 0.95},
    "training": {"algorithm": "rloo", "rm_epochs": 2, "rm_lr": 1e-3, "rm_batch_prompts": 4,
                 "rm_heldout_fraction": 0.2, "policy_lr": 1e-4, "policy_steps": 8, "kl_budget": 50.0},
}


class TinyModelsError(RuntimeError):
    """The tiny models could not be created; the message has the child process's error."""


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def attach_tiny_models(db: Session, project: Project, directory: Path, *, schedule: bool = True,
                       retrain_every: int = 20, prompts_per_round: int = 10) -> dict[str, str]:
    """Create tiny policy/reward models (tokenizer trained on the project's prompts) and configure the project."""
    directory.mkdir(parents=True, exist_ok=True)
    texts_file = directory / "texts.txt"
    texts = [p if isinstance(p, str) else " ".join(m["content"] for m in p)
             for _, p in datasets.project_prompts(db, project.id)]
    texts_file.write_text("\n".join(t.replace("\n", " ") for t in texts if t.strip()) or "hello world\n")
    command = [sys.executable, "-m", "app.cli", "models", "init-tiny", str(directory), "--texts-file", str(texts_file)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise TinyModelsError(f"`{' '.join(command[2:])}` failed: {done.stderr.strip()[-2000:]}")
    paths: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    patch = {section: dict(values) for section, values in TINY_SETTINGS.items()}
    patch["training"].update(policy_model=paths["policy"], reward_model=paths["reward"])
    patch["schedule"] = {"enabled": schedule, "retrain_every": retrain_every, "prompts_per_round": prompts_per_round}
    projects.update(db, project, ProjectUpdate(settings=patch))
    return paths


def ensure_demo_models(project_id: int) -> str | None:
    """For `prefloop demo`: attach tiny models once when torch is installed; returns what was done, or None."""
    if not torch_available():
        return None
    settings = get_settings()
    engine = create_db_engine(settings.database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as db:
            project = projects.get(db, project_id)
            if projects.settings_of(project).training.policy_model:
                return None
            paths = attach_tiny_models(db, project, settings.data_dir / "models" / f"demo-{project_id}")
    except TinyModelsError as exc:
        return f"tiny models not created ({exc}); the app works, the loop needs models"
    finally:
        engine.dispose()
    return f"tiny CPU models for the demo loop: {paths['policy']}, {paths['reward']} (scheduler on)"
