"""Shared glue for handlers: the project and its settings, checkpoint-directory checks, group conversion."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.db import unit_of_work
from app.models import Project
from app.projects import service as projects
from app.registry import service as registry
from app.registry.datasets import TrainingSnapshot
from worker.context import JobContext, JobFailure
from worker.training.groups import RankingGroup


def load_project(db: Session, ctx: JobContext) -> Project:
    if ctx.project_id is None:
        raise JobFailure(f"{ctx.kind} job {ctx.job_id} has no project", retryable=False)
    try:
        return projects.get(db, ctx.project_id)
    except projects.ProjectNotFound as exc:
        raise JobFailure(str(exc), retryable=False) from exc


def data_watermark(ctx: JobContext, fixed: int | None,
                   needed: Callable[[Project], bool] = lambda _project: True) -> int | None:
    """The job's comparison watermark: the one its first attempt fixed, else a settled one taken now
    (None when `needed` says this project's job reads no comparisons).

    Call it before the handler's main transaction, never inside it: it runs in a transaction of its own
    because it briefly holds back ranking submissions (app.registry.service.settled_watermark), and on
    SQLite a second write transaction would wait for the first. The caller stores it in the payload.
    """
    if fixed is not None:
        return fixed
    with unit_of_work(ctx.session_factory) as db:
        project = load_project(db, ctx)
        return registry.settled_watermark(db, project.id) if needed(project) else None


def no_data_message(snapshot: TrainingSnapshot, project_id: int, ai_rankings: str,
                    lead: str = "no rankings to train on") -> str:
    """Why a snapshot has no groups (reward model and DPO alike): none at all, or only AI rankings the
    project's `training.ai_rankings` leaves out, and how to include LLM-judge ones."""
    message = f"{lead} (comparisons up to id {snapshot.watermark})"
    if not snapshot.ai_rankings_left_out:
        return message
    message += f": {snapshot.ai_rankings_left_out} AI rankings were left out"
    if ai_rankings == "exclude":
        return message + (" (training uses human and imported rankings only; to include LLM-judge rankings, "
                          f"prefloop projects configure {project_id} --ai-rankings llm-judge; rankings made by "
                          "the reward model itself are never used)")
    return message + " (they were made by the reward-model ranker, whose rankings are never used for training)"


def ensure_writable_dir(path: Path) -> None:
    """Fail the job at once, with the path and the OS reason, when checkpoints cannot be written there."""
    probe = path / f".write-probe-{uuid.uuid4().hex[:8]}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise JobFailure(
            f"checkpoint directory {path} is not writable: {exc.strerror or exc} "
            "(check PREFLOOP_CHECKPOINT_DIR, its permissions and free disk space)",
            retryable=False,
        ) from exc


def scaled_progress(ctx: JobContext, start: float, end: float) -> Callable[[float, str], None]:
    """A progress callback mapping a sub-task's 0..1 onto start..end of the job."""

    def report(fraction: float, message: str) -> None:
        ctx.progress(start + (end - start) * min(max(fraction, 0.0), 1.0), message)

    return report


def ranking_groups(groups: Sequence[dict[str, Any]]) -> list[RankingGroup]:
    """Plain group dicts (app.registry.datasets) as worker.training RankingGroup objects."""
    return [RankingGroup(**g) for g in groups]


def is_prefloop_checkpoint(path: str | Path) -> bool:
    """A directory written by worker.training.checkpoint (has meta.json with checksums)."""
    root = Path(path)
    return (root / "meta.json").is_file()


def verified(path: str | Path) -> Path:
    """Verify a prefloop checkpoint's checksums before loading it (a plain base model is taken as is)."""
    from worker.training.checkpoint import CheckpointError, verify_checkpoint  # lazy: torch is optional

    root = Path(path)
    if not root.exists():
        raise JobFailure(f"model directory {root} does not exist", retryable=False)
    if is_prefloop_checkpoint(root):
        try:
            verify_checkpoint(root)
        except CheckpointError as exc:
            raise JobFailure(f"checkpoint failed verification: {exc}", retryable=False) from exc
    return root


def version_round(name: str) -> int:
    """The round a policy version samples for: its index (policy-v3 → 3)."""
    try:
        return int(name.rsplit("-v", 1)[1])
    except (IndexError, ValueError):
        return 0


def resume_step(state_dir: Path) -> int:
    """The step a saved training state would resume from (0 when there is none)."""
    from worker.training.checkpoint import has_training_state, load_meta  # lazy: torch is optional

    return int(load_meta(state_dir).get("step", 0)) if has_training_state(state_dir) else 0
