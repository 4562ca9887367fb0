"""A labeled project for data browser tests, built through the real labeling service: a K=9 prompt with long
answers ranked with a tie, flags and a rationale, prompts whose text holds LIKE wildcards, a model version's
round-1 answers, and a skipped task with a reason that a spreadsheet would run as a formula."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.labeling import service as labeling
from app.labeling.schemas import RankingIn
from app.labeling.slots import ensure_slots
from app.models import Completion, ModelVersion, Project, Prompt, Ranking, User
from app.projects.schemas import DEFAULT_FLAGS
from app.quality.picker import install
from tests.factories import make_project, make_prompt, make_user

FLAG = DEFAULT_FLAGS[0]
RATIONALE = "B and C say the same thing; A invents a glacier. <script>alert(1)</script>"
SKIP_REASON = "=HYPERLINK(\"x\") I do not read Norwegian"
AURORA = "Describe the aurora borealis over Tromsø for a first-time visitor."


def long_answer(i: int) -> str:
    """A long answer (about 1,500 characters) with a word of its own."""
    body = " ".join(f"Sentence {j} of answer {i} about green curtains of light." for j in range(30))
    return f"Answer{i}word. {body}"


@dataclass
class Scene:
    project: Project
    admin: User
    alice: User
    bob: User
    aurora: Prompt
    wild: Prompt
    plain: Prompt
    version: ModelVersion
    aurora_ranking: Ranking


def _rank_prompt(db: Session, project: Project, user: User, prompt_id: int) -> Ranking:
    """The user claims tasks until `prompt_id` comes up (skipping none) and ranks it: display order with
    the 2nd and 3rd tied, a flag on the first and a rationale."""
    task = labeling.next_task(db, project, user)
    assert task is not None and task.prompt.id == prompt_id, "the scene expects this prompt next"
    shown = list(task.assignment.shown_completion_ids)
    ranks = {cid: i + 1 for i, cid in enumerate(shown)}
    if len(shown) >= 3:
        ranks[shown[2]] = ranks[shown[1]]
        for cid in shown[3:]:
            ranks[cid] -= 1
    data = RankingIn(ranks=ranks, flags={shown[0]: [FLAG]}, rationale=RATIONALE, active_seconds=42.0,
                     wall_seconds=95.0)
    out = labeling.submit(db, user, task.assignment.id, data)
    db.commit()
    ranking = db.get(Ranking, out["ranking_id"])
    assert ranking is not None
    return ranking


def build(db: Session) -> Scene:
    """The project, committed: alice ranked the aurora prompt; bob skipped it with a reason."""
    install()
    admin = make_user(db, "admin")
    alice, bob = make_user(db), make_user(db)
    alice.display_name, bob.display_name = "Alice", "Bob"
    project = make_project(db, k_min=2, k_max=9, annotations_per_prompt=2)
    version = ModelVersion(project_id=project.id, kind="policy", name="policy-r1", base_model="tiny", status="active")
    db.add(version)
    db.flush()
    plain = make_prompt(db, project, n_completions=3, text="Plain prompt about sourdough starters.")
    wild = make_prompt(db, project, n_completions=2, text="Is 100% of pure_water wet?")
    aurora = Prompt(project_id=project.id, external_id="aurora", text=AURORA, content_hash="a" * 64, priority=10.0)
    db.add(aurora)
    db.flush()
    db.add_all([Completion(prompt_id=aurora.id, position=i, text=long_answer(i), model_name=f"m{i}")
                for i in range(9)])
    db.add(Completion(prompt_id=plain.id, position=3, text="Feed it flour daily.", source="model",
                      model_version_id=version.id, round=1))
    db.flush()
    ensure_slots(db, project)
    db.commit()
    ranking = _rank_prompt(db, project, alice, aurora.id)
    task = labeling.next_task(db, project, bob)
    assert task is not None and task.prompt.id == aurora.id
    labeling.skip(db, bob, task.assignment.id, SKIP_REASON)
    db.commit()
    return Scene(project, admin, alice, bob, aurora, wild, plain, version, ranking)
