"""Promotion by people (app.loop.promotion), the loop's status in words and its triggers, on SQLite and
Postgres: a provisional policy is confirmed by simulated human rankings that prefer it and rolled back
when people prefer the incumbent; the API, the loop page fragment and `prefloop models list --json` show it."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.cli import cli
from app.labeling.slots import ensure_slots
from app.loop import promotion
from app.loop import service as loop
from app.models import Completion, Job, ModelVersion, Project, Prompt, Slot, utcnow
from app.registry import service as registry
from app.scheduler import service as scheduler
from tests.factories import api_token, login, make_project, make_user

M = 6  # training.confirm_rankings of these tests
K = 4


def _version(db: Session, project: Project, name: str, status: str = "candidate",
             parent: ModelVersion | None = None) -> ModelVersion:
    version = ModelVersion(project_id=project.id, kind="policy", name=name, base_model="tiny",
                           checkpoint_path=f"/checkpoints/{name}", status=status, status_reason="", metrics={},
                           training_config={}, parent_id=parent.id if parent else None,
                           reference_version_id=None, activated_at=utcnow() if status == "active" else None)
    db.add(version)
    db.flush()
    return version


def _project(db: Session, **schedule: Any) -> Project:
    settings = {"sampling": {"k": K}, "training": {"confirm_rankings": M},
                "schedule": {"retrain_every": 40, "prompts_per_round": 4, **schedule}}
    return make_project(db, k_min=2, k_max=K, annotations_per_prompt=1, settings=settings)


def _provisional(db: Session, project: Project) -> tuple[ModelVersion, ModelVersion, ModelVersion]:
    """SFT policy-v0, policy-v1 promoted earlier, policy-v2 promoted provisionally by the gates over v1."""
    sft = _version(db, project, "policy-v0", "active")
    v1 = _version(db, project, "policy-v1", parent=sft)
    registry.promote(db, v1, "mean reward up")
    v2 = _version(db, project, "policy-v2", parent=v1)
    v2.reference_version_id = sft.id
    promotion.gate(db, project, v2, registry.Decision(True, "mean reward 0.1 → 0.4 at KL 2.0"))
    return sft, v1, v2


WORDS = {"policy-v0": 1, "policy-v1": 3, "policy-v2": 6}  # what each version writes: this many words


def _sample_round(db: Session, project: Project, prompts: int) -> list[int]:
    """A sampled round as the sampling handler writes it: each task's K candidates from the policies
    `sampling_policies` chooses, then its slots."""
    draws = loop.sampling_policies(db, project, K)
    ids = []
    for i in range(prompts):
        prompt = Prompt(project_id=project.id, external_id=f"q{i}", text=f"Question {i}?", content_hash=f"q{i:063x}")
        db.add(prompt)
        db.flush()
        position = 0
        for draw in draws:
            for n in range(draw.count):
                text = " ".join(f"w{n}" for _ in range(WORDS[draw.name])) + f" {i}"
                db.add(Completion(prompt_id=prompt.id, position=position, text=text, source="model",
                                  model_name=draw.name, model_version_id=draw.version_id, round=0))
                position += 1
        ids.append(prompt.id)
    db.flush()
    ensure_slots(db, project, ids, round_=0)
    return ids


def _rank(client: TestClient, project: Project, headers: dict[str, str], n: int, more_words_better: bool) -> int:
    """A simulated annotator ranks up to `n` open tasks through the JSON API by word count."""
    done = 0
    while done < n:
        task = client.get(f"/api/projects/{project.id}/tasks/next", headers=headers)
        if task.status_code == 204:
            break
        assert task.status_code == 200, task.text
        body = task.json()
        order = sorted(body["completions"], key=lambda c: (-len(c["text"].split()) if more_words_better
                                                           else len(c["text"].split()), c["id"]))
        ranks = {str(c["id"]): rank for rank, c in enumerate(order, start=1)}
        saved = client.post(f"/api/assignments/{body['assignment_id']}/ranking", json={"ranks": ranks}, headers=headers)
        assert saved.status_code in (200, 201), saved.text
        done += 1
    return done


def test_gates_promote_provisionally_and_tasks_show_the_incumbent(db: Session, dialect: str) -> None:
    assert dialect in ("sqlite", "postgresql")
    project = _project(db)
    sft, v1, v2 = _provisional(db, project)
    assert (v2.status, v2.promotion_state, v2.incumbent_version_id) == ("active", "provisional", v1.id)
    assert f"awaits {M} human rankings" in v2.promotion_reason and v1.status == "candidate"
    draws = {d.name: d.count for d in loop.sampling_policies(db, project, K)}
    assert draws == {"policy-v2": 2, "policy-v1": 1, "policy-v0": 1}  # the incumbent, not v2 twice over
    assert {d.name: d.count for d in loop.sampling_policies(db, project, 2)} == {"policy-v2": 1, "policy-v1": 1}

    rejected = _version(db, project, "policy-v3", parent=v2)
    promotion.gate(db, project, rejected, registry.Decision(False, "KL 12 exceeds the budget 10"))
    assert (rejected.status, rejected.promotion_state) == ("rejected", None)

    # With confirm_rankings = 0 the gates decide alone.
    other = _project(db)
    other.settings = {**other.settings, "training": {"confirm_rankings": 0}}
    base = _version(db, other, "policy-v0", "active")
    new = _version(db, other, "policy-v1", parent=base)
    promotion.gate(db, other, new, registry.Decision(True, "better"))
    assert (new.status, new.promotion_state) == ("active", None)
    assert promotion.awaiting(db, other) is None


@pytest.mark.parametrize("people_prefer_new", [True, False], ids=["confirmed", "rolled_back"])
def test_people_confirm_or_roll_back(db: Session, client: TestClient, dialect: str, people_prefer_new: bool) -> None:
    assert dialect in ("sqlite", "postgresql")
    project = _project(db)
    sft, v1, v2 = _provisional(db, project)
    _sample_round(db, project, 8)
    annotator = api_token(db, make_user(db, "annotator"))
    db.commit()

    assert _rank(client, project, annotator, M - 1, people_prefer_new) == M - 1
    db.expire_all()
    wait = promotion.awaiting(db, project)
    assert wait is not None and (wait.have, wait.remaining) == (M - 1, 1)
    assert "policy-v2 awaits 1 more human rankings to confirm" in scheduler.status(db, project).waiting_for[0]
    scheduler.tick(db)
    assert v2.promotion_state == "provisional"  # one ranking short: nothing decided
    db.commit()

    assert _rank(client, project, annotator, 1, people_prefer_new) == 1
    db.expire_all()
    scheduler.tick(db)
    db.commit()
    db.expire_all()
    v1, v2 = db.get(ModelVersion, v1.id), db.get(ModelVersion, v2.id)
    assert v1 is not None and v2 is not None and v2.promotion_decided_at is not None
    if people_prefer_new:
        assert (v2.status, v2.promotion_state, v1.status) == ("active", "confirmed", "candidate")
        assert v2.promotion_reason.startswith("people prefer policy-v2 to policy-v1: Bradley-Terry +")
    else:
        assert (v2.status, v2.promotion_state, v1.status) == ("rejected", "rolled_back", "active")
        assert v2.promotion_reason.startswith("people prefer policy-v1 (the incumbent) to policy-v2: Bradley-Terry -")
        assert v2.status_reason == "rolled back to policy-v1 by people"
        assert "people preferred it to policy-v2" in v1.status_reason
    assert f"direct pairs in {M} human rankings showing both" in v2.promotion_reason
    assert "95% interval" in v2.promotion_reason
    assert promotion.awaiting(db, project) is None
    board = promotion.standings(db, project, n_bootstrap=20)
    assert [s.version.name for s in board][:1] == ["policy-v2" if people_prefer_new else "policy-v0"]
    assert {s.version.name for s in board} == {"policy-v0", "policy-v1", "policy-v2"}
    assert next(s for s in board if s.is_sft).version.id == sft.id
    db.commit()


def test_api_page_and_cli_show_promotion_state(db: Session, client: TestClient,
                                               cli_env: dict[str, str]) -> None:
    project = _project(db)
    sft, v1, v2 = _provisional(db, project)
    _version(db, project, "policy-v3", "rejected", parent=v2)  # never sampled: still on the leaderboard
    _sample_round(db, project, 4)
    annotator = api_token(db, make_user(db, "annotator"))
    admin = make_user(db, "admin")
    headers = api_token(db, admin)
    db.commit()
    assert _rank(client, project, annotator, 2, True) == 2

    listed = {v["name"]: v for v in client.get(f"/api/projects/{project.id}/models?kind=policy", headers=headers).json()}
    assert listed["policy-v2"]["kind"] == "policy"
    assert (listed["policy-v2"]["parent_id"], listed["policy-v2"]["parent"]) == (v1.id, "policy-v1")
    assert (listed["policy-v2"]["reference_version_id"], listed["policy-v2"]["reference_version"]) == (sft.id, "policy-v0")
    assert listed["policy-v2"]["promotion_state"] == "provisional"
    assert listed["policy-v2"]["incumbent_version"] == "policy-v1"
    assert "awaits 6 human rankings" in listed["policy-v2"]["promotion_reason"]
    assert {"comparisons", "rollout_prompts"} <= set(listed["policy-v2"])
    detail = client.get(f"/api/projects/{project.id}/models/{v2.id}", headers=headers).json()
    assert detail["promotion_state"] == "provisional" and detail["parent"] == "policy-v1"

    status = client.get(f"/api/projects/{project.id}/loop", headers=headers)
    assert status.status_code == 200, status.text
    body = status.json()
    assert body["awaiting"] == {"version_id": v2.id, "version": "policy-v2", "incumbent_version_id": v1.id,
                                "incumbent_version": "policy-v1", "rankings": 2, "rankings_needed": M, "remaining": 4}
    assert body["waiting_for"][0] == "policy-v2 awaits 4 more human rankings to confirm (2 of 6 show it beside policy-v1)"

    login(client, admin.email)
    fragment = client.get(f"/projects/{project.id}/jobs", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert 'id="loop-status"' in fragment.text and 'hx-trigger="every 5s"' in fragment.text
    assert "policy-v2 awaits 4 more human rankings to confirm" in fragment.text
    page = client.get(f"/projects/{project.id}/jobs")
    assert "<html" in page.text and "policy-v2 awaits 4 more" in page.text
    models = client.get(f"/projects/{project.id}/models").text
    assert "Policy leaderboard" in models and "(SFT)" in models
    assert "not ranked yet" in models  # policy-v3: every version is listed
    assert "provisional" in models

    result = CliRunner().invoke(cli, ["models", "list", str(project.id), "--kind", "policy", "--json"])
    configured = CliRunner().invoke(cli, ["projects", "configure", str(project.id), "--interval-minutes", "15",
                                          "--confirm-rankings", "8", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"policy-v0", "policy-v1", "policy-v2", "policy-v3"}
    row = rows["policy-v2"]
    assert (row["kind"], row["parent"], row["reference_version_id"], row["promotion_state"]) == (
        "policy", "policy-v1", sft.id, "provisional")
    assert "awaits 6 human rankings" in row["promotion_reason"] and row["comparisons"] == 0
    assert "rollout_prompts" in row and "metrics" not in row
    assert configured.exit_code == 0, configured.output
    saved = json.loads(configured.stdout)["settings"]
    assert (saved["schedule"]["interval_minutes"], saved["training"]["confirm_rankings"]) == (15, 8)


def test_status_says_what_the_loop_waits_for(db: Session) -> None:
    project = _project(db, enabled=True)
    status = scheduler.status(db, project)
    assert status.waiting_for[0] == "40 more comparisons to retrain (0 of 40 since the last reward model)"
    assert status.waiting_for[1] == "no eligible prompts: upload prompts"  # none at all
    prompt = Prompt(project_id=project.id, external_id="x", text="x?", content_hash="x" * 64)
    db.add(prompt)
    db.flush()
    db.add_all([Completion(prompt_id=prompt.id, position=i, text=f"a{i}") for i in range(2)])
    db.flush()
    ensure_slots(db, project)
    assert "no eligible prompts: every prompt is still being labeled" in scheduler.status(db, project).waiting_for

    off = _project(db)
    assert scheduler.status(db, off).waiting_for[-1].startswith("the scheduler is off: start a round by hand")
    job = Job(kind="train_policy", project_id=project.id, payload={}, status="running")
    db.add(job)
    db.flush()
    assert scheduler.status(db, project).waiting_for == [
        f"train_policy (job {job.id}) is running: the next step follows when it succeeds"]


def test_interval_trigger_and_no_training_while_people_decide(db: Session) -> None:
    project = _project(db, enabled=True, interval_minutes=30)
    prompt = Prompt(project_id=project.id, external_id="x", text="x?", content_hash="x" * 64)
    db.add(prompt)
    db.flush()
    now = utcnow()
    first = scheduler.tick(db, now)
    assert [j.kind for j in first] == ["sample_completions"]  # no round yet: due at once
    assert scheduler.tick(db, now) == []  # the round is still running
    db.execute(update(Job).values(status="succeeded", finished_at=now))
    db.flush()
    assert scheduler.tick(db, now + timedelta(minutes=10)) == []
    assert "next round by interval at" in scheduler.status(db, project).waiting_for[-1]
    later = scheduler.tick(db, now + timedelta(minutes=31))
    assert [j.kind for j in later] == ["sample_completions"]
    db.execute(update(Job).values(status="succeeded", finished_at=now))

    # A provisional policy holds training back however many comparisons arrive; once every task is ranked
    # and people still owe rankings, the scheduler samples a round that shows it beside its incumbent.
    held = _project(db, enabled=True, retrain_every=1)
    _sft, _v1, v2 = _provisional(db, held)
    ids = _sample_round(db, held, 2)
    assert scheduler.tick(db, now) == []  # tasks are open: people rank them first
    db.execute(update(Slot).where(Slot.prompt_id.in_(ids)).values(status="done"))
    db.flush()
    jobs = [j for j in scheduler.tick(db, now) if j.project_id == held.id]
    assert [(j.kind, j.payload.get("candidate_version_id")) for j in jobs] == [("sample_completions", v2.id)]
    assert db.scalars(select(Job).where(Job.project_id == held.id, Job.kind == "train_reward_model")).all() == []
    db.execute(update(Job).values(status="succeeded", finished_at=now))
    db.flush()
    by_hand = scheduler.run_loop_now(db, held, "admin")
    assert by_hand.kind == "sample_completions" and by_hand.payload["candidate_version_id"] == v2.id


def test_hand_actions_settle_a_provisional_version(db: Session) -> None:
    project = _project(db)
    _sft, v1, v2 = _provisional(db, project)
    registry.rollback(db, project.id, "policy", by="admin@example.org")
    assert (v2.status, v2.promotion_state, v1.status) == ("rejected", "rolled_back", "active")
    assert v2.promotion_reason == "rolled back to policy-v1 by hand by admin@example.org"
    registry.promote(db, v2, "promoted by hand", by="admin@example.org")  # an admin overrules the rollback
    assert (v2.status, v2.promotion_state) == ("active", "confirmed")

    other = _project(db)
    _sft, w1, w2 = _provisional(db, other)
    registry.promote(db, w2, "promoted by hand", by="admin@example.org")
    assert (w2.promotion_state, w2.promotion_reason) == ("confirmed", "confirmed by hand by admin@example.org")
    third = _project(db)
    _sft, u1, u2 = _provisional(db, third)
    registry.promote(db, u1, "promoted by hand", by="admin@example.org")
    assert u2.promotion_state == "superseded" and "policy-v1 was activated before people decided" in u2.promotion_reason
