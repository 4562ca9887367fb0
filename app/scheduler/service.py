"""When to start loop work: retrain after enough new comparisons (`tick`), or a round by hand.

`tick` runs inside the worker loop (one cheap count per scheduled project), so no extra process is needed.
What follows each job (RM → policy → sampling → scoring) is app.loop.chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.errors import Conflict
from app.jobs import queries as job_queries
from app.jobs import queue
from app.loop import service as loop_service
from app.models import Job, Project
from app.projects import service as projects
from app.registry import datasets
from app.registry import queries as registry_queries

LOOP_KINDS = ("train_reward_model", "train_policy", "sample_completions")


class SchedulerError(Conflict, ValueError):
    """The loop cannot be started now; the message says why."""


@dataclass(frozen=True)
class LoopStatus:
    """What the scheduler sees for one project (shown on the jobs page)."""

    enabled: bool
    retrain_every: int
    prompts_per_round: int
    new_comparisons: int
    prompts_without_completions: int
    eligible_prompts: int
    active_jobs: list[Job]


def status(db: Session, project: Project) -> LoopStatus:
    schedule = projects.settings_of(project).schedule
    watermark = registry_queries.latest_trained_watermark(db, project.id)
    return LoopStatus(
        enabled=schedule.enabled,
        retrain_every=schedule.retrain_every,
        prompts_per_round=schedule.prompts_per_round,
        new_comparisons=registry_queries.count_comparisons_after(db, project.id, watermark),
        prompts_without_completions=datasets.count_prompts_without_completions(db, project.id),
        eligible_prompts=loop_service.count_eligible(db, project),
        active_jobs=job_queries.active_jobs_of(db, project.id),
    )


def _loop_busy(db: Session, project_id: int) -> bool:
    return any(j.kind in LOOP_KINDS for j in job_queries.active_jobs_of(db, project_id))


def run_loop_now(db: Session, project: Project, requested_by: str = "") -> Job:
    """Admin request: retrain on the new comparisons (then policy, then sample), or sample a round of the
    prompts the round plan chooses (app.loop.planning)."""
    active = [j for j in job_queries.active_jobs_of(db, project.id) if j.kind in LOOP_KINDS]
    if active:
        return active[0]
    loop = status(db, project)
    if loop.new_comparisons > 0:
        job, _ = queue.enqueue(db, "train_reward_model", project.id, {"chain": True, "requested_by": requested_by})
        return job
    if loop.eligible_prompts > 0:
        job, _ = queue.enqueue(db, "sample_completions", project.id, {"limit": loop.prompts_per_round})
        return job
    raise SchedulerError("nothing to do: no new comparisons since the last reward model and no eligible "
                         "prompts (every prompt is still being labeled)")


def tick(db: Session) -> list[Job]:
    """Enqueue reward-model training for every scheduled project with enough new comparisons."""
    created: list[Job] = []
    for project in projects.list_projects(db):
        schedule = projects.settings_of(project).schedule
        if not schedule.enabled or _loop_busy(db, project.id):
            continue
        watermark = registry_queries.latest_trained_watermark(db, project.id)
        if registry_queries.count_comparisons_after(db, project.id, watermark) < schedule.retrain_every:
            continue
        job, was_created = queue.enqueue(db, "train_reward_model", project.id, {"chain": True,
                                                                                 "requested_by": "scheduler"})
        if was_created:
            created.append(job)
    return created
