"""Training data as plain dicts (no torch): ranking groups up to a comparison watermark, and prompts.

A group is one ranking (ranks {completion: rank}, 1 = best, ties equal) or one imported pair (a group of
two). Only comparisons with id <= watermark are read, so a retried job with the same watermark reads
exactly the same data; the snapshot hash lets the job check that.

Which rankings train: `trains_on`, the AI-ranking training policy (app.projects.schemas.AI_RANKINGS_POLICY).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from app.models import Prompt, Ranking
from app.projects.schemas import AiRankings
from app.registry import queries

PromptValue = str | list[dict[str, str]]

LLM_JUDGE_RANKER = "chat"
"""client_info["ranker"] of an AI ranking made by an LLM judge (app.quality.ai_annotator.ChatRanker)."""
REWARD_MODEL_RANKER = "reward-model"
"""client_info["ranker"] of an AI ranking made from the reward model's scores (never trained on)."""


@dataclass
class TrainingSnapshot:
    """Everything a training job reads: groups (plain dicts), the comparison ids they contain, a hash."""

    watermark: int
    groups: list[dict[str, Any]] = field(default_factory=list)
    comparison_ids: list[int] = field(default_factory=list)
    snapshot_hash: str = ""
    ai_rankings_left_out: int = 0
    group_comparisons: dict[str, list[int]] = field(default_factory=dict)
    """The comparison ids of each group, by group_id."""


def prompt_value(prompt: Prompt) -> PromptValue:
    """The prompt as the models take it: plain text, or chat messages (a system text becomes the first turn)."""
    if prompt.messages:
        messages = [{"role": str(m.get("role", "user")), "content": str(m.get("content", ""))} for m in prompt.messages]
        if prompt.system and not any(m["role"] == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": prompt.system})
        return messages
    text = prompt.text or ""
    if prompt.system:
        return [{"role": "system", "content": prompt.system}, {"role": "user", "content": text}]
    return text


def trains_on(ranking: Ranking, ai_rankings: AiRankings) -> bool:
    """Whether `ranking` is training data (reward model, DPO) under the project's `ai_rankings` setting: the
    only code that applies app.projects.schemas.AI_RANKINGS_POLICY. Human and imported rankings always;
    AI rankings (source 'ai') only with "llm-judge" and only an LLM judge's (client_info["ranker"] ==
    LLM_JUDGE_RANKER); the reward-model ranker's (REWARD_MODEL_RANKER) never."""
    if ranking.source != "ai":
        return True
    return ai_rankings == "llm-judge" and (ranking.client_info or {}).get("ranker") == LLM_JUDGE_RANKER


def _trainable_rankings(db: Session, ranking_ids: list[int],
                        ai_rankings: AiRankings) -> tuple[dict[int, Ranking], int]:
    """The rankings among `ranking_ids` that train under the policy, by id, and how many AI ones it left out."""
    loaded = queries.rankings_by_ids(db, ranking_ids) if ranking_ids else []
    kept = {r.id: r for r in loaded if trains_on(r, ai_rankings)}
    return kept, sum(1 for r in loaded if r.source == "ai" and r.id not in kept)


def load_snapshot(db: Session, project_id: int, watermark: int,
                  ai_rankings: AiRankings = "exclude", *, test_set_version: int | None = None) -> TrainingSnapshot:
    """Ranking groups built from the non-tied comparisons of the project with id <= watermark, of the
    rankings `ai_rankings` allows (`trains_on`) and of imported pairs without a ranking; with
    `test_set_version`, only those of the prompts in the project's test set up to that version.

    `ai_rankings_left_out` counts the AI rankings the policy kept out, for the callers' messages.
    """
    rows = queries.snapshot_comparisons(db, project_id, watermark, test_set_version)
    by_ranking: dict[int, list[int]] = {}
    loose: list[Any] = []
    for row in rows:
        if row.ranking_id is None:
            loose.append(row)
        else:
            by_ranking.setdefault(row.ranking_id, []).append(row.id)
    rankings, left_out = _trainable_rankings(db, list(by_ranking), ai_rankings)
    completion_ids: set[int] = {c for row in loose for c in (row.winner_id, row.loser_id)}
    for ranking in rankings.values():
        completion_ids.update(int(c) for c in ranking.ranks)
    texts = queries.completion_texts(db, list(completion_ids)) if completion_ids else {}
    prompt_ids = {r.prompt_id for r in rankings.values()} | {row.prompt_id for row in loose}
    prompts = queries.prompts_by_ids(db, list(prompt_ids)) if prompt_ids else {}

    groups: list[dict[str, Any]] = []
    used: list[int] = []
    group_comparisons: dict[str, list[int]] = {}
    for ranking_id in sorted(rankings):
        ranking = rankings[ranking_id]
        items = sorted((int(cid), int(rank)) for cid, rank in ranking.ranks.items() if int(cid) in texts)
        if len(items) < 2 or len({rank for _, rank in items}) < 2:
            continue
        groups.append({
            "prompt": prompt_value(prompts[ranking.prompt_id]),
            "completions": [texts[cid] for cid, _ in items],
            "ranks": [rank for _, rank in items],
            "weight": float(ranking.weight),
            "annotator": str(ranking.annotator_id) if ranking.annotator_id is not None else ranking.source,
            "prompt_id": str(ranking.prompt_id),
            "group_id": f"ranking-{ranking_id}",
        })
        used.extend(by_ranking[ranking_id])
        group_comparisons[f"ranking-{ranking_id}"] = list(by_ranking[ranking_id])
    for row in loose:
        groups.append({
            "prompt": prompt_value(prompts[row.prompt_id]),
            "completions": [texts[row.winner_id], texts[row.loser_id]],
            "ranks": [1, 2],
            "weight": float(row.weight),
            "annotator": str(row.annotator_id) if row.annotator_id is not None else "imported",
            "prompt_id": str(row.prompt_id),
            "group_id": f"comparison-{row.id}",
        })
        used.append(row.id)
        group_comparisons[f"comparison-{row.id}"] = [row.id]
    used.sort()
    digest = hashlib.sha256(json.dumps({"ids": used, "groups": [(g["group_id"], g["ranks"], g["weight"])
                                                                 for g in groups]}).encode()).hexdigest()
    return TrainingSnapshot(watermark=watermark, groups=groups, comparison_ids=used, snapshot_hash=digest,
                            ai_rankings_left_out=left_out, group_comparisons=group_comparisons)


def project_prompts(db: Session, project_id: int) -> list[tuple[int, PromptValue]]:
    """Every non-gold prompt of the project as (id, prompt value), oldest first."""
    return [(p.id, prompt_value(p)) for p in queries.non_gold_prompts(db, project_id)]


def count_prompts_without_completions(db: Session, project_id: int) -> int:
    """The project's non-gold prompts that have no completion yet."""
    return queries.count_prompts_without_completions(db, project_id)


def prompt_bucket(prompt_id: int) -> float:
    """A prompt's place in [0, 1] by a hash of its id: the same for ever, whatever else the project holds."""
    return int(hashlib.sha256(f"heldout-{prompt_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def heldout_prompt_ids(prompt_ids: list[int], fraction: float = 0.1, minimum: int = 1) -> set[int]:
    """A stable held-out subset of prompts (by a hash of the id, so it never changes as prompts are added)."""
    chosen = {pid for pid in prompt_ids if prompt_bucket(pid) < fraction}
    if len(chosen) < minimum and len(prompt_ids) > minimum:
        chosen |= set(sorted(prompt_ids, key=prompt_bucket)[:minimum])
    return chosen


def split_snapshot(snapshot: TrainingSnapshot, prompt_ids: set[int]) -> tuple[TrainingSnapshot, list[dict[str, Any]]]:
    """(the snapshot without the groups of `prompt_ids`, those groups): the training data and what a
    test set holds out of it. The training part keeps the whole snapshot's hash (a retry checks the data
    it read, not the split) and only the comparison ids of the groups it kept (its lineage)."""
    keep = {str(p) for p in prompt_ids}
    train = [g for g in snapshot.groups if g["prompt_id"] not in keep]
    held = [g for g in snapshot.groups if g["prompt_id"] in keep]
    ids = sorted(c for g in train for c in snapshot.group_comparisons.get(g["group_id"], []))
    part = TrainingSnapshot(watermark=snapshot.watermark, groups=train, comparison_ids=ids,
                            snapshot_hash=snapshot.snapshot_hash, ai_rankings_left_out=snapshot.ai_rankings_left_out,
                            group_comparisons={g["group_id"]: snapshot.group_comparisons.get(g["group_id"], [])
                                               for g in train})
    return part, held
