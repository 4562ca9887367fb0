"""Helpers for the loop tests: tiny models once per session, a configured project, scripted annotators."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.models import Project, Prompt
from tests.factories import make_project

PROMPTS = [
    "Summarize: the landlord refused to fix the heater for a month.",
    "Explain why the sky looks blue during the day.",
    "Write a short poem about the sea at night.",
    "How do I reverse a list in Python?",
    "Summarize: the meeting was moved to Thursday afternoon.",
    "Give one tip for a tired traveller.",
    "What should a careful reader do with a long email?",
    "Describe the weather report in one line.",
    "Thank the team for the quarterly budget.",
    "Rewrite the safety rules politely.",
    "Answer a difficult question about rain.",
    "Praise the new student for the final chapter.",
]


def tiny_loop_project(db: Session, models: dict[str, Path], *, algorithm: str = "ppo", prompts: int = 12,
                      per_round: int = 6, retrain_every: int = 18, k: int = 3, **training: Any) -> Project:
    """A project wired to the tiny models: K = 3 (or `k`), one ranking per prompt, short generations, few steps.
    The training gates decide promotion alone unless a test passes `confirm_rankings` (promotion by people)."""
    settings = {
        "sampling": {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8, "seed": 0, "k": k},
        "training": {"policy_model": str(models["policy"]), "reward_model": str(models["reward"]),
                     "algorithm": algorithm, "rm_epochs": 1, "rm_lr": 1e-3, "rm_batch_prompts": 2,
                     "rm_heldout_fraction": 0.25, "policy_lr": 1e-3, "policy_steps": 3, "kl_budget": 1000.0,
                     "rm_accuracy_tolerance": 1.0, "confirm_rankings": 0, **training},
        "schedule": {"enabled": True, "retrain_every": retrain_every, "prompts_per_round": per_round},
    }
    project = make_project(db, k_min=2, k_max=k, annotations_per_prompt=1, settings=settings)
    for i, text in enumerate(PROMPTS[:prompts]):
        db.add(Prompt(project_id=project.id, external_id=f"loop-{i}", text=text, content_hash=f"{i:064x}"))
    db.flush()
    return project


def prefer_shorter(completions: list[dict[str, Any]]) -> dict[str, int]:
    """The scripted annotator: shorter is better (ties broken by id so every ranking is strict)."""
    order = sorted(completions, key=lambda c: (len(c["text"]), c["id"]))
    return {str(c["id"]): rank for rank, c in enumerate(order, start=1)}


def words(text: str) -> int:
    """The planted preference of the improvement test: more whitespace-separated words is better.

    Chosen because plain RL on a tiny random policy drifts the *other* way (towards shorter text, see
    docs/worker.md), so a policy that gains words gained them from the reward model, not from the recipe.
    """
    return len(text.split())


def rank_by_words(completions: list[dict[str, Any]]) -> dict[str, Any]:
    """The planted annotator: dense ranks by word count, ties share a rank (and train nothing); a task
    whose candidates all have the same count is marked not rankable."""
    values = sorted({words(c["text"]) for c in completions}, reverse=True)
    ranks = {str(c["id"]): values.index(words(c["text"])) + 1 for c in completions}
    return {"ranks": ranks, "not_rankable": len(values) < 2}


def annotate_all(client: TestClient, project_id: int, headers: dict[str, str],
                 body_for: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None) -> int:
    """Rank every open task through the JSON API; returns how many rankings were submitted.

    `body_for` builds the submission from the shown completions (default: shorter first, strict ranks)."""
    for submitted in range(1000):
        response = client.get(f"/api/projects/{project_id}/tasks/next", headers=headers)
        if response.status_code == 204:
            return submitted
        assert response.status_code == 200, response.text
        task = response.json()
        body = body_for(task["completions"]) if body_for else {"ranks": prefer_shorter(task["completions"])}
        saved = client.post(f"/api/assignments/{task['assignment_id']}/ranking", json=body, headers=headers)
        assert saved.status_code in (200, 201), saved.text
    raise AssertionError("annotation never ran out of tasks")


def add_ranked_prompts(db: Session, project: Project, n: int, start: int = 0) -> list[int]:
    """Arrange `n` prompts with 3 uploaded completions each, ranked shorter-first (rows, as the API stores them)."""
    from app.models import Comparison, Completion, Ranking

    comparison_ids: list[int] = []
    for i in range(start, start + n):
        prompt = Prompt(project_id=project.id, external_id=f"ranked-{i}", text=PROMPTS[i % len(PROMPTS)] + f" #{i}",
                        content_hash=f"r{i:063x}")
        db.add(prompt)
        db.flush()
        texts = ["Yes.", "It is fine, thank you.", "I am not sure that is correct; could you check the numbers again?"]
        rows = [Completion(prompt_id=prompt.id, position=j, text=t) for j, t in enumerate(texts)]
        db.add_all(rows)
        db.flush()
        ranks = {str(c.id): j + 1 for j, c in enumerate(rows)}
        ranking = Ranking(project_id=project.id, prompt_id=prompt.id, ranks=ranks, shown_order=[c.id for c in rows])
        db.add(ranking)
        db.flush()
        for a in range(3):
            for b in range(a + 1, 3):
                comparison = Comparison(project_id=project.id, prompt_id=prompt.id, ranking_id=ranking.id,
                                        winner_id=rows[a].id, loser_id=rows[b].id, winner_rank=a + 1,
                                        loser_rank=b + 1, rank_gap=b - a)
                db.add(comparison)
                db.flush()
                comparison_ids.append(comparison.id)
    return comparison_ids


def win_rate(new_policy: str | Path, old_policy: str | Path, prompts: Sequence[str], preference: Callable[[str], float],
             *, samples: int, max_new_tokens: int, seed: int = 1) -> float:
    """Share of `prompts` on which the new policy's samples score higher than the old one's by `preference`
    (mean over `samples` completions per prompt, same sampling seed for both; a tie counts half)."""
    from worker.training.sampling import load_policy, sample_completions

    def mean_scores(path: str | Path) -> list[float]:
        model, tokenizer = load_policy(path, device="cpu")
        outs = sample_completions(model, tokenizer, list(prompts), samples, max_new_tokens=max_new_tokens, seed=seed)
        return [sum(preference(t) for t in texts) / len(texts) for texts in outs]

    new, old = mean_scores(new_policy), mean_scores(old_policy)
    won = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(new, old, strict=True))
    return won / max(len(prompts), 1)


def trained_comparisons(db: Session, project_id: int, comparison_ids: Sequence[int]) -> list[int]:
    """`comparison_ids` less those of the project's test-set prompts: what a reward model trains on (the
    test set is held out of every training run; app.registry.service.extend_test_set)."""
    from sqlalchemy import select

    from app.models import Comparison
    from app.registry import service as registry

    held = registry.test_set_prompt_ids(db, project_id)
    assert held, "the project has no test set"
    prompt_of = dict(db.execute(select(Comparison.id, Comparison.prompt_id)
                                .where(Comparison.id.in_(list(comparison_ids)))).all())
    return sorted(c for c in comparison_ids if prompt_of[c] not in held)
