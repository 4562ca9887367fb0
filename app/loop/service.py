"""The loop's domain rules on top of its queries: plan a round, choose the policies that write a task's
candidates, store a sampled round, the frozen KL reference (the SFT version), rollout lineage.

The SFT version is the newest policy version a `train_sft` job trained on the project's demonstrations
(`role = "sft"`); until one exists (no demonstrations), the project's first policy version, the base model
registered from `training.policy_model` (policy-v0). Never commits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.demonstrations import service as demonstrations
from app.labeling.slots import ensure_slots
from app.loop import kl_schedule, planning, queries
from app.models import Completion, ModelVersion, Project
from app.models.enums import PromotionState, VersionKind, VersionRole, VersionStatus
from app.projects.service import settings_of
from app.quality.stats.active import prompt_uncertainty
from app.quality.stats.agreement import pairwise_agreement
from app.registry import service as registry
from app.registry.datasets import PromptValue, prompt_value
from app.registry.schemas import VersionOut

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
    """The reward model's uncertainty over the prompt's latest candidates (an ensemble's disagreement, else
    the margin uncertainty): from the active reward model's scores, else from the newest reward model that
    scored them (in a chained round the model promoted just before has scored nothing yet)."""
    if not row.scores:
        return None
    version = reward_version_id if reward_version_id in row.scores else max(row.scores)
    scores = row.scores[version]
    return prompt_uncertainty(scores, row.members.get(version, [])) if len(scores) >= 2 else None


def disagreement(rankings: Sequence[tuple[int | None, Mapping[Hashable, int]]]) -> float | None:
    """How much the people who ranked a prompt disagree: 1 - the pairwise agreement rate over every pair
    of rankings by two different annotators (pairs of candidates both ordered strictly; rankings of
    different rounds share no candidates and count nothing). None when no two rankings overlap."""
    agree = total = 0.0
    for i, (who_a, a) in enumerate(rankings):
        for who_b, b in rankings[i + 1:]:
            if who_a is not None and who_a == who_b:
                continue
            counts = pairwise_agreement(a, b)
            agree, total = agree + counts.agree, total + counts.total
    return 1.0 - agree / total if total else None


def plan_round(db: Session, project: Project, limit: int | None = None,
               prompt_ids: Sequence[int] | None = None) -> list[PlannedPrompt]:
    """The prompts the next round samples (see app.loop.planning), or the given ones that are not still
    being labeled; each gets round = its latest round + 1 (0 for a prompt without completions).

    The loop's own choice never takes a prompt of the project's test set; a request naming its prompts
    (by hand) may, and the new rankings join a later test-set version."""
    schedule = settings_of(project).schedule
    rows = queries.prompt_rows(db, project.id, prompt_ids)
    if prompt_ids is not None:
        choices = [planning.Choice(r.prompt_id, REQUESTED) for r in rows if not r.pending][:limit]
    else:
        reward = registry.active_version(db, project.id, VersionKind.REWARD)
        held_out = registry.test_set_prompt_ids(db, project.id)
        people = queries.human_rankings_by_prompt(db, project.id)
        states = [planning.PromptState(r.prompt_id, r.ranked, r.pending, r.priority, r.last_sampled_at,
                                       _uncertainty(r, reward.id if reward else None),
                                       disagreement(people.get(r.prompt_id, [])), r.prompt_id in held_out)
                  for r in rows]
        choices = planning.choose_prompts(states, limit or schedule.prompts_per_round, resample=schedule.resample,
                                          uncertain_share=schedule.uncertain_share,
                                          disagreement_share=schedule.disagreement_share)
    latest = {r.prompt_id: r.latest_round for r in rows}
    prompts = queries.prompts_by_id(db, [c.prompt_id for c in choices])
    return [PlannedPrompt(c.prompt_id, prompt_value(prompts[c.prompt_id]), _next_round(latest[c.prompt_id]),
                          c.reason) for c in choices]


def _next_round(latest: int | None) -> int:
    return 0 if latest is None else latest + 1


def count_eligible(db: Session, project: Project) -> int:
    """How many prompts a round could choose from now (the loop status and `run_loop_now`): those not
    being labeled and not in the test set, never-ranked ones only when `schedule.resample` is off."""
    resample = settings_of(project).schedule.resample
    held_out = registry.test_set_prompt_ids(db, project.id)
    return sum(1 for r in queries.prompt_rows(db, project.id, with_scores=False)
               if not r.pending and r.prompt_id not in held_out and (resample or not r.ranked))


def sft_version(db: Session, project: Project) -> ModelVersion | None:
    """The frozen SFT version: the newest version `train_sft` trained, else the project's first policy
    version (the base model, registered if none)."""
    registry.ensure_base_version(db, project, VersionKind.POLICY)
    return queries.sft_policy_version(db, project.id) or queries.first_policy_version(db, project.id)


def base_policy(db: Session, project: Project) -> ModelVersion | None:
    """The policy SFT starts from: the project's first policy version (the base model, registered if none)."""
    registry.ensure_base_version(db, project, VersionKind.POLICY)
    return queries.first_policy_version(db, project.id)


def sft_due(db: Session, project: Project) -> bool:
    """Stage one of the loop is due: the project has a policy model and at least
    `training.sft_min_demonstrations` demonstrations, and no policy was trained yet (so the SFT version
    comes before the first trained policy, and the reference never changes under a running loop)."""
    training = settings_of(project).training
    if not training.policy_model:
        return False
    trained, _ = queries.trained_policy_counts(db, project.id)
    return trained == 0 and demonstrations.count(db, project.id) >= training.sft_min_demonstrations


def activate_sft(db: Session, project: Project, version: ModelVersion, reason: str) -> bool:
    """Make a trained SFT version the active policy when the active one is the base model or an earlier
    SFT version; a policy trained since stays active (the SFT version is a candidate to promote by hand).
    Returns whether it was activated."""
    active = registry.active_version(db, project.id, VersionKind.POLICY)
    base = queries.first_policy_version(db, project.id)
    if active is None or active.role == VersionRole.SFT or (base is not None and active.id == base.id):
        registry.promote(db, version, reason)
        return True
    version.status_reason = f"{reason}; {active.name} (trained after SFT) stays active: promote by hand"
    db.flush()
    return False


def reference_for(db: Session, project: Project, starting: ModelVersion) -> ModelVersion:
    """The KL reference of a PPO/RLOO run from `starting`: the SFT version (`training.reference = "sft"`,
    the default, as InstructGPT keeps it) or the starting policy (`"previous"`)."""
    if settings_of(project).training.reference == "previous":
        return starting
    return sft_version(db, project) or starting


def kl_step(db: Session, project: Project) -> kl_schedule.KlStep:
    """The KL coefficient of the project's next PPO/RLOO round (`training.kl_schedule`): learnt from the last
    PPO/RLOO version that finished training, promoted or not (app.loop.kl_schedule)."""
    training = settings_of(project).training
    target = training.kl_target_share * training.kl_budget
    if training.kl_schedule == "fixed":
        return kl_schedule.KlStep(coef=training.kl_beta, target=target)
    stop = kl_schedule.STOP_SHARE * training.kl_budget
    for version in reversed(queries.policy_versions(db, project.id)):
        config, metrics = version.training_config or {}, version.metrics or {}
        if config.get("algorithm") in ("ppo", "rloo") and metrics.get("kl") is not None:
            coef, kl = config.get("kl_coef"), float(metrics["kl"])
            previous = float(coef) if coef is not None else None
            return kl_schedule.KlStep(coef=kl_schedule.next_coef(training.kl_beta, target, previous, kl),
                                      target=target, stop=stop, previous_version=version.name,
                                      previous_coef=previous, previous_kl=kl)
    return kl_schedule.KlStep(coef=training.kl_beta, target=target, stop=stop)


def sampling_policies(db: Session, project: Project, k: int,
                      candidate_version_id: int | None = None) -> list[PolicyDraw]:
    """The policies that write a task's `k` candidates: the round's new candidate (default: the active
    policy), the active policy and the SFT version, shared by `sampling.from_active` / `from_sft`
    (app.loop.planning.policy_mix).

    While the active policy is provisional (app.loop.promotion), the active share goes to the incumbent it
    replaced, at least one candidate per task, so people's rankings show the two side by side.
    """
    active = registry.ensure_base_version(db, project, VersionKind.POLICY)
    if active is None or not active.checkpoint_path:
        raise LoopError("the project has no policy model: set training.policy_model "
                        f"(prefloop projects configure {project.id} --policy-model PATH)")
    candidate = active
    if candidate_version_id is not None:
        found = registry.find(db, candidate_version_id)
        if found is not None and found.project_id == project.id and found.kind == VersionKind.POLICY \
                and found.checkpoint_path and found.status != VersionStatus.TRAINING:
            candidate = found
    sft = sft_version(db, project) or active
    sampling = settings_of(project).sampling
    beside, from_active, from_sft = active, sampling.from_active, sampling.from_sft
    incumbent = _incumbent_of(db, active)
    if incumbent is not None:
        beside, from_active = incumbent, max(1, from_active)
        from_sft = min(from_sft, max(0, k - 1 - from_active))
    versions = {v.id: v for v in (candidate, beside, sft)}
    mix = planning.policy_mix(k, candidate=candidate.id, active=beside.id, sft=sft.id,
                              from_active=from_active, from_sft=from_sft)
    return [PolicyDraw(vid, versions[vid].name, str(versions[vid].checkpoint_path), n) for vid, n in mix]


def _incumbent_of(db: Session, version: ModelVersion) -> ModelVersion | None:
    """The version a provisional policy replaced, when it can still sample."""
    if version.promotion_state != PromotionState.PROVISIONAL or version.incumbent_version_id is None:
        return None
    incumbent = registry.find(db, version.incumbent_version_id)
    return incumbent if incumbent is not None and incumbent.checkpoint_path else None


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


def version_views(db: Session, versions: Sequence[ModelVersion]) -> list[VersionOut]:
    """Versions as the API and `prefloop models list` show them: kind, parent, reference, incumbent (ids
    and names), lineage counts, status and promotion state with their reasons; reward models also their
    accuracy and calibration on the fixed test set with its version."""
    ids = [v.id for v in versions]
    counts, rollouts = registry.lineage_counts(db, ids), queries.prompt_lineage_counts(db, ids)
    demonstrated = demonstrations.lineage_counts(db, ids)
    names = {v.id: v.name for v in versions}

    def name_of(version_id: int | None) -> str | None:
        if version_id is None:
            return None
        if version_id not in names:
            found = registry.find(db, version_id)
            names[version_id] = found.name if found is not None else ""
        return names[version_id] or None

    out = []
    for v in versions:
        view = VersionOut.model_validate(v)
        view.parent, view.reference_version = name_of(v.parent_id), name_of(v.reference_version_id)
        view.incumbent_version = name_of(v.incumbent_version_id)
        view.comparisons, view.rollout_prompts = counts.get(v.id, 0), rollouts.get(v.id, 0)
        view.demonstrations = demonstrated.get(v.id, 0)
        score = registry.latest_test_score(v.metrics) if v.kind == VersionKind.REWARD else None
        if score is not None:
            view.test_set_version, view.test_accuracy = score.get("test_set_version"), score.get("accuracy")
            view.test_ece, view.test_pairs = score.get("ece"), score.get("n_pairs")
        out.append(view)
    return out
