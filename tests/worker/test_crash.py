"""kill -9 of a real worker process during training and during a checkpoint write, on SQLite and Postgres:
the job is requeued once its heartbeat goes stale, the previous checkpoint still verifies and loads, and the
retried run trains on exactly the comparisons up to the recorded watermark (none skipped, none twice)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.jobs import queue
from app.models import Job, JobEvent, ModelVersion
from app.registry import service as registry
from app.settings import Settings
from tests.conftest import REPO, TEST_SECRET
from tests.worker.loop_helpers import add_ranked_prompts, tiny_loop_project, trained_comparisons
from worker.loop import WorkerConfig, run_worker
from worker.training.checkpoint import verify_checkpoint
from worker.training.reward import RewardScorer


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLOOP_")}
    env.update(PREFLOOP_ENV="test", PREFLOOP_DATABASE_URL=settings.database_url, PREFLOOP_SECRET_KEY=TEST_SECRET,
               PREFLOOP_DATA_DIR=str(settings.data_dir), PREFLOOP_CHECKPOINT_DIR=str(settings.checkpoint_dir),
               OMP_NUM_THREADS="1", **extra)
    return env


@pytest.fixture
def spawn(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str, **env: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"worker-{len(procs)}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "worker", "--heartbeat-seconds", "0.3", "--poll-seconds",
                                 "0.2", *args], cwd=REPO, env=_env(settings, **env), stdout=log,
                                stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def _wait(check: Callable[[], bool], what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)  # polling a condition with a deadline, never a fixed sleep
    raise AssertionError(f"timed out waiting for {what}")


def _job(db: Session, job_id: int) -> Job:
    db.expire_all()
    job = db.get(Job, job_id)
    db.commit()
    assert job is not None
    return job


def test_kill_during_training_resumes_same_data(db: Session, clean_engine: Engine, settings: Settings,
                                                tiny_models: dict[str, Path], spawn: Callable[..., subprocess.Popen[bytes]]
                                                ) -> None:
    project = tiny_loop_project(db, tiny_models, rm_batch_prompts=1, rm_epochs=12, rm_heldout_fraction=0.2)
    comparison_ids = add_ranked_prompts(db, project, 10)
    job, _ = queue.enqueue(db, "train_reward_model", project.id, max_attempts=3)
    db.commit()
    base_rm = Path(str(tiny_models["reward"]))
    first = spawn("--stale-seconds", "60")
    _wait(lambda: _job(db, job.id).progress >= 0.35, "training past its first saved state")
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=30) == -signal.SIGKILL
    # New comparisons after the job started must not leak into its retry.
    later = add_ranked_prompts(db, project, 2, start=50)
    db.commit()
    version = db.scalars(select(ModelVersion).where(ModelVersion.job_id == job.id)).one()
    out_dir = registry.version_dir(settings.checkpoint_dir, project.id, "reward", version.id)
    saved_step = verify_checkpoint(out_dir / "state")["step"]  # the resume state written before the kill is intact
    assert saved_step > 0
    assert (base_rm / "model.safetensors").is_file()
    assert _job(db, job.id).status == "running"

    second = spawn("--stale-seconds", "2")
    _wait(lambda: _job(db, job.id).status == "succeeded", "the retried job to succeed")
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=60) == 0  # SIGTERM while idle: clean exit
    done = _job(db, job.id)
    assert done.attempts == 2 and done.payload["watermark"] == comparison_ids[-1]
    assert done.result is not None and done.result["resumed_from_step"] == saved_step  # resumed, not restarted
    trail = [(e.from_status, e.to_status, e.message) for e in db.scalars(
        select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id))]
    assert [t[:2] for t in trail] == [(None, "queued"), ("queued", "running"), ("running", "queued"),
                                      ("queued", "running"), ("running", "succeeded")]
    assert "heartbeat stale" in trail[2][2]
    db.refresh(version)
    assert done.payload["test_set_version"] == 1  # fixed at the first attempt, like the watermark
    trained = trained_comparisons(db, project.id, comparison_ids)
    assert registry.lineage(db, version.id) == trained and not set(later) & set(registry.lineage(db, version.id))
    # No step done twice or skipped: exactly one loss per optimizer step of the planned run.
    assert len(version.metrics["loss_curve"]) == version.metrics["steps"]
    verify_checkpoint(version.checkpoint_path or "")
    assert not (out_dir / "state").exists()


def test_sigterm_checkpoints_and_requeues(db: Session, clean_engine: Engine, settings: Settings,
                                         tiny_models: dict[str, Path],
                                         spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    project = tiny_loop_project(db, tiny_models, rm_batch_prompts=1, rm_epochs=12, rm_heldout_fraction=0.2)
    comparison_ids = add_ranked_prompts(db, project, 10)
    job, _ = queue.enqueue(db, "train_reward_model", project.id, max_attempts=1)
    db.commit()
    worker = spawn("--stale-seconds", "60")
    _wait(lambda: _job(db, job.id).progress >= 0.2, "training to be under way")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=120) == 0  # the current step finished, state saved, clean exit
    released = _job(db, job.id)
    assert released.status == "queued" and released.attempts == 0  # a shutdown is not a failed attempt
    version = db.scalars(select(ModelVersion).where(ModelVersion.job_id == job.id)).one()
    state = registry.version_dir(settings.checkpoint_dir, project.id, "reward", version.id) / "state"
    saved_step = verify_checkpoint(state)["step"]
    assert saved_step > 0
    db.commit()
    config = WorkerConfig(worker_id="next", once=True, heartbeat_seconds=0.2, stale_seconds=30, run_scheduler=False)
    assert run_worker(settings, config, engine=clean_engine) == 1
    done = _job(db, job.id)
    assert done.status == "succeeded" and done.attempts == 1, done.error
    assert done.result is not None and done.result["resumed_from_step"] == saved_step
    db.refresh(version)
    assert len(version.metrics["loss_curve"]) == version.metrics["steps"]
    assert registry.lineage(db, version.id) == trained_comparisons(db, project.id, comparison_ids)


def test_kill_during_checkpoint_write_keeps_previous(db: Session, clean_engine: Engine, settings: Settings,
                                                     tiny_models: dict[str, Path],
                                                     spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    project = tiny_loop_project(db, tiny_models, rm_heldout_fraction=0.2)
    add_ranked_prompts(db, project, 6)
    queue.enqueue(db, "train_reward_model", project.id)
    db.commit()
    config = WorkerConfig(worker_id="setup", once=True, heartbeat_seconds=0.2, stale_seconds=30, run_scheduler=False)
    assert run_worker(settings, config, engine=clean_engine) == 1
    previous = registry.active_version(db, project.id, "reward")
    assert previous is not None and previous.name == "reward-v1", previous and previous.status_reason
    previous_ids = registry.lineage(db, previous.id)
    new_ids = add_ranked_prompts(db, project, 4, start=20)
    job, _ = queue.enqueue(db, "train_reward_model", project.id)
    db.commit()

    crashed = spawn("--stale-seconds", "60", PREFLOOP_TEST_CRASH_AT="checkpoint-write:.model.tmp-")
    assert crashed.wait(timeout=240) == -signal.SIGKILL
    version = db.scalars(select(ModelVersion).where(ModelVersion.job_id == job.id)).one()
    out_dir = registry.version_dir(settings.checkpoint_dir, project.id, "reward", version.id)
    assert list(out_dir.glob(".model.tmp-*")), "the crash hit mid-write: a temporary directory is left"
    assert not (out_dir / "model").exists()  # never published half-written
    verify_checkpoint(previous.checkpoint_path or "")
    assert len(RewardScorer(previous.checkpoint_path or "").score(["Hi"], ["Yes."])) == 1

    retry = spawn("--stale-seconds", "2")
    _wait(lambda: _job(db, job.id).status in ("succeeded", "failed"), "the retried job to finish")
    retry.kill()
    done = _job(db, job.id)
    assert done.status == "succeeded" and done.attempts == 2, done.error
    db.refresh(version)
    assert registry.lineage(db, version.id) == trained_comparisons(db, project.id, previous_ids + new_ids)
    assert registry.lineage(db, previous.id) == previous_ids
    verify_checkpoint(version.checkpoint_path or "")
    assert not list(out_dir.glob(".model.tmp-*"))  # the abandoned temporary directory was cleaned up


def test_unwritable_checkpoint_dir_fails_clearly(db: Session, clean_engine: Engine, settings: Settings,
                                                 tiny_models: dict[str, Path], tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the checkpoint directory should be")
    broken = settings.model_copy(update={"checkpoint_dir": blocker / "checkpoints"})
    project = tiny_loop_project(db, tiny_models)
    add_ranked_prompts(db, project, 4)
    job, _ = queue.enqueue(db, "train_reward_model", project.id, max_attempts=3)
    db.commit()
    config = WorkerConfig(worker_id="w", once=True, heartbeat_seconds=0.2, stale_seconds=30, run_scheduler=False)
    assert run_worker(broken, config, engine=clean_engine) == 1
    done = _job(db, job.id)
    assert done.status == "failed" and done.attempts == 1
    assert done.error and "not writable" in done.error and str(blocker) in done.error
    version = db.scalars(select(ModelVersion).where(ModelVersion.job_id == job.id)).one()
    assert version.status == "rejected" and "not writable" in version.status_reason
    assert registry.active_version(db, project.id, "reward").name == "reward-v0"  # type: ignore[union-attr]
