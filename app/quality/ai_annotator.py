"""The AI annotator: an `is_ai` user that ranks tasks through the same labeling service as people.

Two rankers: the active reward model's stored scores (completions.meta["rm_score"], written by the
`score_prompts` job), or an OpenAI-compatible chat endpoint configured by the admin, asked for an order
like "B > A > C" and parsed defensively. Each task is claimed in one transaction, ranked outside any
transaction (a slow endpoint must not hold the database), and submitted or skipped in another. Its
rankings are stored with source='ai' and never enter human agreement figures; client_info records the ranker
({"via": "ai-annotate", "ranker": "reward-model"} or {..., "ranker": "chat", "model": NAME}), which decides
whether training may use them (app.registry.datasets.trains_on, the AI-ranking training policy).
An AI annotator fills slots like anyone else: raise annotations_per_prompt if it should rank in addition to
N people.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from sqlalchemy.orm import Session, sessionmaker

from app.auth import service as auth
from app.db import unit_of_work
from app.labeling import service as labeling
from app.labeling.errors import LabelingError
from app.labeling.schemas import RankingIn
from app.models import Project, User
from app.quality import queries
from app.registry.datasets import LLM_JUDGE_RANKER, REWARD_MODEL_RANKER


@dataclass(frozen=True)
class TaskView:
    """A claimed task as plain data (safe to use after its session closed)."""

    assignment_id: int
    prompt: str
    letters: list[str]
    completion_ids: list[int]
    texts: list[str]
    rm_scores: list[float | None]


class Ranker(Protocol):
    """Ranks a task (completion id -> rank, or None to skip) and says what it is for the ranking's client_info."""

    def __call__(self, view: TaskView) -> dict[int, int] | None: ...

    def client_info(self) -> dict[str, Any]:
        """The ranker's label, stored in client_info next to "via" (at least a "ranker" key)."""
        ...


def ai_user(db: Session, name: str = "reward-model") -> User:
    """The AI annotator user for `name` (created on first use, with a password nobody is told)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:60] or "ai"
    email = f"ai-{slug}@prefloop.local"
    user = queries.user_by_email(db, email)
    if user is None:
        user = auth.create_user(db, email, "annotator", display_name=f"AI: {name}"[:200], is_ai=True).user
    elif not user.is_ai:
        raise ValueError(f"{email} exists and is not an AI user")
    return user


def ranks_from_scores(ids: Sequence[int], scores: Sequence[float]) -> dict[int, int]:
    """Competition ranks (1 = highest score, equal scores tie)."""
    ordered = sorted(set(scores), reverse=True)
    level = {s: 1 + sum(1 for x in scores if x > s) for s in ordered}
    return {cid: level[s] for cid, s in zip(ids, scores, strict=True)}


@dataclass(frozen=True)
class RewardModelRanker:
    """Ranks by the active reward model's stored scores (its rankings never train a model, see datasets)."""

    def __call__(self, view: TaskView) -> dict[int, int] | None:
        """Ranks from the scores; None (skip) when a shown completion has none."""
        if any(s is None for s in view.rm_scores):
            return None
        return ranks_from_scores(view.completion_ids, [float(s) for s in view.rm_scores if s is not None])

    def client_info(self) -> dict[str, Any]:
        """{"ranker": "reward-model"}."""
        return {"ranker": REWARD_MODEL_RANKER}


rm_ranker = RewardModelRanker()


_ORDER = re.compile(r"[A-P](?:\s*(?:>|=|,)\s*[A-P])+")


def parse_order(text: str, letters: Sequence[str]) -> dict[str, int] | None:
    """Letter -> rank from a reply such as "B > A = C > D"; None unless some chain names every letter once.

    The last complete chain in the reply wins (models often restate the answer at the end); "," is read
    as ">", "=" as a tie. Anything else in the reply is ignored.
    """
    wanted = set(letters)
    for chain in reversed(_ORDER.findall(text.upper())):
        tokens = re.findall(r"[A-P]|>|=|,", chain)
        names = [t for t in tokens if t.isalpha()]
        if len(names) != len(set(names)) or set(names) != wanted:
            continue
        ranks: dict[str, int] = {}
        rank, pos = 1, 1
        for t in tokens:
            if t in (">", ","):
                rank = pos
            elif t.isalpha():
                ranks[t] = rank
                pos += 1
        return ranks
    return None


@dataclass
class ChatRanker:
    """Asks an OpenAI-compatible /chat/completions endpoint for an order of the lettered answers."""

    endpoint: str
    model: str
    api_key: str | None = None
    timeout: float = 60.0
    client: httpx.Client | None = field(default=None, repr=False)

    def build_request(self, view: TaskView) -> httpx.Request:
        answers = "\n\n".join(f"Answer {letter}:\n{text}" for letter, text in zip(view.letters, view.texts, strict=True))
        body = {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": "You rank candidate answers to a prompt from best to worst. Reply with "
                 "the letters only, best first, separated by '>' (use '=' for a tie), e.g. 'B > A > C'."},
                {"role": "user", "content": f"Prompt:\n{view.prompt}\n\n{answers}\n\nRank all "
                 f"{len(view.letters)} answers ({', '.join(view.letters)})."},
            ],
        }
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.Request("POST", self.endpoint.rstrip("/") + "/chat/completions", json=body, headers=headers)

    def client_info(self) -> dict[str, Any]:
        """{"ranker": "chat", "model": the model name}: an LLM judge (RLAIF data when the project opts in)."""
        return {"ranker": LLM_JUDGE_RANKER, "model": self.model}

    @staticmethod
    def reply_text(payload: Any) -> str:
        """The first choice's message content, or '' for any other shape."""
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return ""
        return content if isinstance(content, str) else ""

    def __call__(self, view: TaskView) -> dict[int, int] | None:
        client = self.client or httpx.Client(timeout=self.timeout)
        try:
            response = client.send(self.build_request(view))
            response.raise_for_status()
            payload = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        finally:
            if self.client is None:
                client.close()
        by_letter = parse_order(self.reply_text(payload), view.letters)
        if by_letter is None:
            return None
        return {cid: by_letter[letter] for cid, letter in zip(view.completion_ids, view.letters, strict=True)}


def _view(db: Session, project: Project, task: Any) -> TaskView:
    active = queries.active_reward_version(db, project.id)

    def score(meta: Mapping[str, Any] | None) -> float | None:
        m = meta or {}
        ok = active is not None and m.get("rm_score_version") == active.id and isinstance(m.get("rm_score"), int | float)
        return float(m["rm_score"]) if ok else None

    prompt = task.prompt.text or "\n".join(str(m.get("content", "")) for m in (task.prompt.messages or []))
    return TaskView(task.assignment.id, prompt, list(task.letters), [c.id for c in task.completions],
                    [c.text for c in task.completions], [score(c.meta) for c in task.completions])


@dataclass
class AnnotateResult:
    submitted: int = 0
    skipped: int = 0
    ranking_ids: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"submitted": self.submitted, "skipped": self.skipped, "ranking_ids": self.ranking_ids}


def annotate(factory: sessionmaker[Session], project_id: int, user_id: int, ranker: Ranker,
             max_tasks: int) -> AnnotateResult:
    """Claim, rank and submit up to `max_tasks` tasks as the AI user; a task the ranker cannot rank is
    skipped with a reason (so it goes back to the pool for people). Each ranking's client_info carries
    "via": "ai-annotate" and the ranker's `client_info()`."""
    result = AnnotateResult()
    info = {"via": "ai-annotate", **ranker.client_info()}
    for _ in range(max_tasks):
        with unit_of_work(factory) as db:
            project, user = labeling.labeling_project(db, project_id), db.get(User, user_id)
            assert user is not None and user.is_ai
            task = labeling.next_task(db, project, user)
            if task is None:
                break
            view = _view(db, project, task)
        ranks = ranker(view)
        with unit_of_work(factory) as db:
            user = db.get(User, user_id)
            assert user is not None
            if ranks is None:
                labeling.skip(db, user, view.assignment_id, "AI annotator: no usable ranking for this task")
                result.skipped += 1
                continue
            try:
                out = labeling.submit(db, user, view.assignment_id, RankingIn(ranks=ranks), dict(info))
            except LabelingError:
                labeling.skip(db, user, view.assignment_id, "AI annotator: ranking refused")
                result.skipped += 1
                continue
            result.submitted += 1
            result.ranking_ids.append(int(out["ranking_id"]))
    return result
