"""When to start loop work, and what the loop is waiting for.

A round starts on `schedule.retrain_every` new comparisons, when `schedule.interval_minutes` passed since
the last round started, or by hand (`run_loop_now`: page, API, CLI). While the active policy is
provisional (app.loop.promotion) no new training round starts: the loop waits for people, and when
every task is ranked and people still owe rankings, it samples another round of tasks that show the
provisional policy beside its incumbent. `tick` runs inside the worker loop (a few cheap counts per
project), so no extra process is needed; it also lets people's rankings confirm or roll back a
provisional policy. Before the first round, when the project has `training.sft_min_demonstrations`
demonstrations and no trained policy, the round starts with `train_sft` (stage one: the SFT version);
demonstrations imported before anyone ranked start it at once, without waiting for a round.
What follows each job (SFT → RM → policy → sampling → scoring) is app.loop.chain.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.demonstrations import service as demonstrations
from app.errors import Conflict
from app.jobs import queries as job_queries
from app.jobs import queue
from app.loop import promotion
from app.loop import queries as loop_queries
from app.loop import service as loop_service
from app.models import Job, Project, utcnow
from app.models.enums import JobKind, PromotionState
from app.projects import service as projects
from app.registry import datasets
from app.registry import queries as registry_queries

# The jobs of a loop round (one at a time per project), and those that start one.
LOOP_KINDS = (JobKind.TRAIN_SFT, JobKind.TRAIN_REWARD_MODEL, JobKind.TRAIN_POLICY, JobKind.SAMPLE_COMPLETIONS)
ROUND_STARTS = (JobKind.TRAIN_REWARD_MODEL, JobKind.SAMPLE_COMPLETIONS)
log = logging.getLogger(__name__)


class SchedulerError(Conflict, ValueError):
    """The loop cannot be started now; the message says why."""


@dataclass(frozen=True)
class LoopStatus:
    """What the scheduler sees for one project (the loop page, its API and `prefloop loop status`);
    `waiting_for` says in words what the loop waits for, most pressing first."""

    enabled: bool
    retrain_every: int
    prompts_per_round: int
    new_comparisons: int
    prompts_without_completions: int
    eligible_prompts: int
    active_jobs: list[Job]
    interval_minutes: int = 0
    next_interval_at: datetime | None = None
    awaiting: promotion.Awaiting | None = None
    open_slots: int = 0
    demonstrations: int = 0
    sft_due: bool = False
    waiting_for: list[str] = field(default_factory=list)


def status(db: Session, project: Project) -> LoopStatus:
    schedule = projects.settings_of(project).schedule
    watermark = registry_queries.latest_trained_watermark(db, project.id)
    interval = schedule.interval_minutes
    last = loop_queries.last_round_started_at(db, project.id, ROUND_STARTS) if interval else None
    loop = LoopStatus(
        enabled=schedule.enabled,
        retrain_every=schedule.retrain_every,
        prompts_per_round=schedule.prompts_per_round,
        new_comparisons=registry_queries.count_comparisons_after(db, project.id, watermark),
        prompts_without_completions=datasets.count_prompts_without_completions(db, project.id),
        eligible_prompts=loop_service.count_eligible(db, project),
        active_jobs=job_queries.active_jobs_of(db, project.id),
        interval_minutes=interval,
        next_interval_at=last + timedelta(minutes=interval) if last is not None else None,
        awaiting=promotion.awaiting(db, project),
        open_slots=loop_queries.open_slot_count(db, project.id),
        demonstrations=demonstrations.count(db, project.id),
        sft_due=loop_service.sft_due(db, project),
    )
    return replace(loop, waiting_for=waiting_for(loop, resample=schedule.resample))


def waiting_for(loop: LoopStatus, *, resample: bool = True, now: datetime | None = None) -> list[str]:
    """What the loop waits for, in words, most pressing first (pure: from a LoopStatus)."""
    jobs = [j for j in loop.active_jobs if j.kind in LOOP_KINDS]
    if jobs:
        job = jobs[0]
        return [f"{job.kind} (job {job.id}) is {job.status}: the next step follows when it succeeds"]
    out: list[str] = []
    if loop.sft_due:
        out.append(f"{loop.demonstrations} demonstration(s): the next round starts with train_sft, which trains "
                   "the SFT version (the reference of every later round)")
    if loop.awaiting is not None:
        out.append(loop.awaiting.message())
        if loop.awaiting.remaining > 0 and loop.open_slots == 0:
            out.append("every task is ranked: " + ("the scheduler samples a round that shows both" if loop.enabled
                                                    else "Run the loop now samples a round that shows both"))
        return out
    missing = loop.retrain_every - loop.new_comparisons
    if missing > 0:
        out.append(f"{missing} more comparisons to retrain ({loop.new_comparisons} of {loop.retrain_every} "
                   "since the last reward model)")
    elif loop.enabled:
        out.append(f"{loop.new_comparisons} new comparisons: the next scheduler tick starts a round")
    if loop.eligible_prompts == 0:
        if not resample:
            out.append("no eligible prompts: upload prompts (resampling is off)")
        elif loop.open_slots > 0:
            out.append("no eligible prompts: every prompt is still being labeled")
        else:
            out.append("no eligible prompts: upload prompts")
    if loop.enabled and loop.interval_minutes:
        if loop.next_interval_at is None or loop.next_interval_at <= (now or utcnow()):
            out.append(f"a round is due (every {loop.interval_minutes} min): the next scheduler tick starts it")
        else:
            out.append(f"next round by interval at {loop.next_interval_at:%Y-%m-%d %H:%M} UTC")
    if not loop.enabled:
        out.append("the scheduler is off: start a round by hand (Run the loop now, the loop/run API or "
                   "prefloop loop run)")
    return out


def _loop_busy(db: Session, project_id: int) -> bool:
    return any(j.kind in LOOP_KINDS for j in job_queries.active_jobs_of(db, project_id))


def _sample_round(db: Session, project: Project, limit: int, candidate: int | None, by: str) -> Job:
    payload: dict[str, object] = {"limit": limit}
    if candidate is not None:
        payload["candidate_version_id"] = candidate
    job, _ = queue.enqueue(db, JobKind.SAMPLE_COMPLETIONS, project.id, payload)
    log.info("%s: sampling a round for project %s (job %s)", by, project.id, job.id)
    return job


def run_loop_now(db: Session, project: Project, requested_by: str = "") -> Job:
    """Admin request: retrain on the new comparisons (then policy, then sample), or sample a round of the
    prompts the round plan chooses (app.loop.planning). While a policy awaits people, only sample: a round
    of tasks that show it beside its incumbent."""
    active = [j for j in job_queries.active_jobs_of(db, project.id) if j.kind in LOOP_KINDS]
    if active:
        return active[0]
    loop = status(db, project)
    if loop.sft_due:
        return _train_sft(db, project, requested_by or "by hand", chain=True)
    if loop.awaiting is not None:
        if loop.eligible_prompts > 0:
            return _sample_round(db, project, loop.prompts_per_round, loop.awaiting.version.id, requested_by or "by hand")
        raise SchedulerError(f"{loop.awaiting.message()}; every prompt is still being labeled: rank the open tasks")
    if loop.new_comparisons > 0:
        job, _ = queue.enqueue(db, JobKind.TRAIN_REWARD_MODEL, project.id, {"chain": True, "requested_by": requested_by})
        return job
    if loop.eligible_prompts > 0:
        return _sample_round(db, project, loop.prompts_per_round, None, requested_by or "by hand")
    raise SchedulerError("nothing to do: no new comparisons since the last reward model and no eligible "
                         "prompts (every prompt is still being labeled)")


def _train_sft(db: Session, project: Project, by: str, *, chain: bool) -> Job:
    job, _ = queue.enqueue(db, JobKind.TRAIN_SFT, project.id, {"chain": chain, "requested_by": by})
    log.info("%s: training the SFT version of project %s (job %s)", by, project.id, job.id)
    return job


def run_sft_now(db: Session, project: Project, requested_by: str = "") -> Job:
    """Admin request (`POST /api/projects/{id}/loop/sft`, `prefloop loop sft`): train the SFT version on the
    project's demonstrations now (with none, the base model stays the SFT version). The newest SFT version
    becomes the reference of later PPO/RLOO rounds."""
    if not projects.settings_of(project).training.policy_model:
        raise SchedulerError("the project has no policy model: set training.policy_model "
                             f"(prefloop projects configure {project.id} --policy-model PATH)")
    active = [j for j in job_queries.active_jobs_of(db, project.id) if j.kind in LOOP_KINDS]
    if active and active[0].kind != JobKind.TRAIN_SFT:
        raise SchedulerError(f"{active[0].kind} (job {active[0].id}) is {active[0].status}: train SFT when "
                             "the loop is idle")
    return _train_sft(db, project, requested_by or "by hand", chain=False)


def tick(db: Session, now: datetime | None = None) -> list[Job]:
    """The worker's scheduler step: let people's rankings decide provisional policies, then start a round for
    every scheduled project that has enough new comparisons or whose interval passed (while a policy awaits
    people: a sampling round once every task is ranked)."""
    for verdict in promotion.check_all(db):
        log.info("people %s %s: %s", "confirmed" if verdict.state == PromotionState.CONFIRMED else "rolled back",
                 verdict.version, verdict.reason)
    now = now or utcnow()
    created: list[Job] = []
    for project in projects.list_projects(db):
        schedule = projects.settings_of(project).schedule
        if not schedule.enabled or _loop_busy(db, project.id):
            continue
        wait = promotion.awaiting(db, project)
        if wait is not None:
            if wait.remaining > 0 and loop_queries.open_slot_count(db, project.id) == 0 \
                    and loop_service.count_eligible(db, project) > 0:
                created.append(_sample_round(db, project, schedule.prompts_per_round, wait.version.id, "scheduler"))
            continue
        watermark = registry_queries.latest_trained_watermark(db, project.id)
        new = registry_queries.count_comparisons_after(db, project.id, watermark)
        due = False
        if schedule.interval_minutes:
            last = loop_queries.last_round_started_at(db, project.id, ROUND_STARTS)
            due = last is None or last + timedelta(minutes=schedule.interval_minutes) <= now
        starts = new >= schedule.retrain_every or (due and new > 0) \
            or (due and loop_service.count_eligible(db, project) > 0)
        if starts and loop_service.sft_due(db, project):
            # Stage one first: the round this tick would start follows the SFT version (app.loop.chain).
            created.append(_train_sft(db, project, "scheduler", chain=True))
        elif watermark == 0 and new == 0 and loop_service.sft_due(db, project) \
                and loop_queries.last_round_started_at(db, project.id, (JobKind.TRAIN_SFT,)) is None:
            # Demonstrations came (imported) before any ranking: stage one needs no rankings, so the SFT
            # version is trained at once (the demo's first start shows it); rounds follow as people rank.
            # Only once: a failed SFT run waits for a round or a retry by hand instead of looping.
            created.append(_train_sft(db, project, "scheduler", chain=False))
        elif new >= schedule.retrain_every or (due and new > 0):
            job, was_created = queue.enqueue(db, JobKind.TRAIN_REWARD_MODEL, project.id, {
                "chain": True, "requested_by": "scheduler" if new >= schedule.retrain_every else "interval"})
            if was_created:
                created.append(job)
        elif due and loop_service.count_eligible(db, project) > 0:
            created.append(_sample_round(db, project, schedule.prompts_per_round, None, "interval"))
    return created
