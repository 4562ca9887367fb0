"""The loop's domain rules on top of its queries: plan a round, choose the policies that write a task's
candidates, store a sampled round, the frozen KL reference (the SFT version), rollout lineage.

The SFT version is the project's first policy version: with no demonstrations the base model
registered from `training.policy_model` (policy-v0) is the SFT model (issue 12: a `train_sft` job that
trains it on demonstrations is not built yet). Never commits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.labeling.slots import ensure_slots
from app.loop import planning, queries
from app.models import Completion, ModelVersion, Project
from app.projects.service import settings_of
from app.quality.active import margin_uncertainty
from app.registry import service as registry
from app.registry.datasets import PromptValue, prompt_value

REQUESTED = "requested"


class LoopError(ValueError):
    """The loop cannot take this step; the message says why and what to set."""


@dataclass(frozen=True)
class PlannedPrompt:
    """A prompt of the round: its value for the model, the round its new candidates get, and why."""

    prompt_id: int
    prompt: PromptValue
    round: int
    reason: str


@dataclass(frozen=True)
class PolicyDraw:
    """One policy writing `count` of each task's candidates."""

    version_id: int
    name: str
    checkpoint_path: str
    count: int


def _uncertainty(row: queries.PromptRow, reward_version_id: int | None) -> float | None:
    """The reward model's uncertainty over the prompt's latest candidates: from the active reward
    model's scores, else from the newest reward model that scored them (in a chained round the model
    promoted just before has scored nothing yet)."""
    if not row.scores:
        return None
    version = reward_version_id if reward_version_id in row.scores else max(row.scores)
    scores = row.scores[version]
    return margin_uncertainty(scores) if len(scores) >= 2 else None


def plan_round(db: Session, project: Project, limit: int | None = None,
               prompt_ids: Sequence[int] | None = None) -> list[PlannedPrompt]:
    """The prompts the next round samples (see app.loop.planning), or the given ones that are not still
    being labeled; each gets round = its latest round + 1 (0 for a prompt without completions)."""
    schedule = settings_of(project).schedule
    rows = queries.prompt_rows(db, project.id, prompt_ids)
    if prompt_ids is not None:
        choices = [planning.Choice(r.prompt_id, REQUESTED) for r in rows if not r.pending][:limit]
    else:
        reward = registry.active_version(db, project.id, "reward")
        states = [planning.PromptState(r.prompt_id, r.ranked, r.pending, r.priority, r.last_sampled_at,
                                       _uncertainty(r, reward.id if reward else None)) for r in rows]
        choices = planning.choose_prompts(states, limit or schedule.prompts_per_round, resample=schedule.resample,
                                          uncertain_share=schedule.uncertain_share)
    latest = {r.prompt_id: r.latest_round for r in rows}
    prompts = queries.prompts_by_id(db, [c.prompt_id for c in choices])
    return [PlannedPrompt(c.prompt_id, prompt_value(prompts[c.prompt_id]), _next_round(latest[c.prompt_id]),
                          c.reason) for c in choices]


def _next_round(latest: int | None) -> int:
    return 0 if latest is None else latest + 1


def count_eligible(db: Session, project: Project) -> int:
    """How many prompts a round could choose from now (the loop status and `run_loop_now`): those not
    being labeled, never-ranked ones only when `schedule.resample` is off."""
    resample = settings_of(project).schedule.resample
    return sum(1 for r in queries.prompt_rows(db, project.id, with_scores=False)
               if not r.pending and (resample or not r.ranked))


def sft_version(db: Session, project: Project) -> ModelVersion | None:
    """The frozen SFT version: the project's first policy version (registering the base model if none)."""
    registry.ensure_base_version(db, project, "policy")
    return queries.first_policy_version(db, project.id)


def reference_for(db: Session, project: Project, starting: ModelVersion) -> ModelVersion:
    """The KL reference of a PPO/RLOO run from `starting`: the SFT version (`training.reference = "sft"`,
    the default, as InstructGPT keeps it) or the starting policy (`"previous"`)."""
    if settings_of(project).training.reference == "previous":
        return starting
    return sft_version(db, project) or starting


def sampling_policies(db: Session, project: Project, k: int,
                      candidate_version_id: int | None = None) -> list[PolicyDraw]:
    """The policies that write a task's `k` candidates: the round's new candidate (default: the active
    policy), the active policy and the SFT version, shared by `sampling.from_active` / `from_sft`
    (app.loop.planning.policy_mix)."""
    active = registry.ensure_base_version(db, project, "policy")
    if active is None or not active.checkpoint_path:
        raise LoopError("the project has no policy model: set training.policy_model "
                        f"(prefloop projects configure {project.id} --policy-model PATH)")
    candidate = active
    if candidate_version_id is not None:
        found = registry.find(db, candidate_version_id)
        if found is not None and found.project_id == project.id and found.kind == "policy" \
                and found.checkpoint_path and found.status != "training":
            candidate = found
    sft = sft_version(db, project) or active
    sampling = settings_of(project).sampling
    versions = {v.id: v for v in (candidate, active, sft)}
    mix = planning.policy_mix(k, candidate=candidate.id, active=active.id, sft=sft.id,
                              from_active=sampling.from_active, from_sft=sampling.from_sft)
    return [PolicyDraw(vid, versions[vid].name, str(versions[vid].checkpoint_path), n) for vid, n in mix]


@dataclass(frozen=True)
class StoredRound:
    prompt_ids: list[int]
    completions: int
    slots: int


def store_round(db: Session, project: Project, planned: Sequence[PlannedPrompt],
                samples: Mapping[int, Sequence[tuple[PolicyDraw, str]]], job_id: int) -> StoredRound:
    """Write each planned prompt's new candidates (with the version that wrote each) and open the slots
    of its new round. A prompt another job sampled meanwhile (its latest round reached the planned one)
    is left out, so two candidate sets never mix in one round."""
    latest = queries.latest_rounds(db, [p.prompt_id for p in planned])
    rows: list[Completion] = []
    by_round: dict[int, list[int]] = defaultdict(list)
    for plan in planned:
        if plan.prompt_id not in samples or latest.get(plan.prompt_id, -1) >= plan.round:
            continue
        by_round[plan.round].append(plan.prompt_id)
        rows += [Completion(prompt_id=plan.prompt_id, position=i, text=text, source="model", model_name=draw.name,
                            model_version_id=draw.version_id, round=plan.round, meta={"job_id": job_id})
                 for i, (draw, text) in enumerate(samples[plan.prompt_id])]
    queries.add_completions(db, rows)
    slots = sum(ensure_slots(db, project, sorted(ids), round_=r) for r, ids in by_round.items())
    return StoredRound(sorted(p for ids in by_round.values() for p in ids), len(rows), slots)


def record_rollout_lineage(db: Session, version_id: int, prompt_ids: Sequence[int]) -> None:
    """Lineage of a PPO/RLOO version: the prompts its rollouts were sampled from."""
    queries.replace_prompt_lineage(db, version_id, prompt_ids)
    db.flush()


def rollout_prompts(db: Session, version_id: int) -> list[int]:
    return queries.prompt_lineage(db, version_id)


def rollout_prompt_counts(db: Session, version_ids: Sequence[int]) -> dict[int, int]:
    return queries.prompt_lineage_counts(db, version_ids)
