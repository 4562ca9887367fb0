"""/metrics values after arranged data: queue depth by kind and status, the oldest running heartbeat, rankings
(stored, submitted here, active annotators), the newest trained models' accuracy and KL, job durations, and
the process collectors; a database that is down is reported, not an error."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, update
from sqlalchemy.orm import Session

from app.jobs import queue
from app.main import ROUTERS, create_app
from app.models import Job, ModelVersion, Ranking, utcnow
from app.settings import Settings
from app.web.metrics import RANKING_SUBMIT_ROUTES
from tests.factories import api_token, make_project, make_prompt, make_user
from tests.labeling.helpers import seeded_project

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_queue_labeling_and_training_metrics(client: TestClient, db: Session, dialect: str) -> None:
    assert dialect in ("sqlite", "postgresql")
    now = utcnow()
    p1, p2 = make_project(db), make_project(db)
    queue.enqueue(db, "train_reward_model", p1.id)
    queue.enqueue(db, "train_reward_model", p2.id)
    running = queue.claim(db, "w1", kinds=["train_reward_model"])
    assert running is not None
    db.execute(update(Job).where(Job.id == running.id).values(heartbeat_at=now - timedelta(seconds=40)))
    for seconds in (10.0, 20.0, 30.0):
        done, _ = queue.enqueue(db, "sample_completions", p1.id)
        assert queue.claim(db, "w1", kinds=["sample_completions"]) is not None
        assert queue.finish(db, done.id, "w1")
        db.execute(update(Job).where(Job.id == done.id).values(started_at=now - timedelta(seconds=seconds),
                                                                finished_at=now))
    prompt = make_prompt(db, p1)
    annotators = [make_user(db) for _ in range(3)]
    for i, (user, age) in enumerate(zip(annotators + [annotators[0]], (1, 2, 60, 3), strict=True)):
        db.add(Ranking(project_id=p1.id, prompt_id=prompt.id, annotator_id=user.id, ranks={"1": 1},
                       shown_order=[1], created_at=now - timedelta(minutes=age), payload_hash=str(i)))
    for kind, status, metrics in (("reward", "candidate", {"heldout_accuracy": 0.6}),
                                  ("reward", "active", {"heldout_accuracy": 0.75}),
                                  ("reward", "training", {}),  # still training: not the latest run
                                  ("policy", "candidate", {"kl": 0.125})):
        db.add(ModelVersion(project_id=p1.id, kind=kind, name=f"{kind}-{status}", base_model="b", status=status,
                            metrics=metrics))
    db.commit()
    got = scrape(client)
    assert got[("prefloop_database_up", ())] == 1
    assert got[("prefloop_jobs", (("kind", "train_reward_model"), ("status", "queued")))] == 1
    assert got[("prefloop_jobs", (("kind", "train_reward_model"), ("status", "running")))] == 1
    assert got[("prefloop_jobs", (("kind", "train_reward_model"), ("status", "failed")))] == 0
    assert got[("prefloop_jobs", (("kind", "sample_completions"), ("status", "succeeded")))] == 3
    assert not [key for key in got if key[0] == "prefloop_jobs" and dict(key[1])["kind"] == "train_policy"]
    assert 40 <= got[("prefloop_worker_heartbeat_age_seconds", ())] < 300
    assert got[("prefloop_rankings_total", ())] == 4
    assert got[("prefloop_active_annotators", ())] == 2  # the third ranked an hour ago
    assert got[("prefloop_reward_model_heldout_accuracy", (("project_id", str(p1.id)),))] == 0.75
    assert got[("prefloop_policy_kl", (("project_id", str(p1.id)),))] == 0.125
    assert ("prefloop_reward_model_heldout_accuracy", (("project_id", str(p2.id)),)) not in got
    durations = {q: got[("prefloop_job_duration_seconds", (("kind", "sample_completions"), ("quantile", q)))]
                 for q in ("0.5", "0.9", "1.0")}
    assert durations == {"0.5": 20.0, "0.9": 30.0, "1.0": 30.0}
    assert ("prefloop_job_duration_seconds", (("kind", "train_reward_model"), ("quantile", "0.5"))) not in got
    assert got[("process_resident_memory_bytes", ())] > 0 and ("python_info" in {k[0] for k in got})


def test_an_empty_queue_reports_zero_heartbeat_age(client: TestClient) -> None:
    got = scrape(client)
    assert got[("prefloop_worker_heartbeat_age_seconds", ())] == 0
    assert not [key for key in got if key[0] == "prefloop_jobs"]


def test_submitted_rankings_are_counted(client: TestClient, db: Session) -> None:
    routes = {(method, getattr(route, "path", "")) for router in ROUTERS for route in router.routes
              for method in getattr(route, "methods", ())}
    assert routes >= RANKING_SUBMIT_ROUTES  # a renamed submit route must update the counter's list
    project = seeded_project(db, prompts=2, k=2, k_max=2)
    headers = api_token(db, make_user(db))
    db.commit()
    before = scrape(client)[("prefloop_rankings_submitted_total", ())]
    task = client.get(f"/api/projects/{project.id}/tasks/next", headers=headers).json()
    url = f"/api/assignments/{task['assignment_id']}/ranking"
    ranks = {str(c["id"]): i + 1 for i, c in enumerate(task["completions"])}
    assert client.post(url, json={"ranks": {"1": 1}}, headers=headers).status_code >= 400  # refused: not counted
    assert client.post(url, json={"ranks": ranks}, headers=headers).status_code == 200
    got = scrape(client)
    assert got[("prefloop_rankings_submitted_total", ())] == before + 1
    assert got[("prefloop_rankings_total", ())] == 1
    assert got[("prefloop_active_annotators", ())] == 1


def test_a_database_that_is_down_is_reported(settings: Settings) -> None:
    down = create_engine("postgresql+psycopg://x@127.0.0.1:1/none", pool_pre_ping=False,
                         connect_args={"connect_timeout": 1})
    app = create_app(Settings(**{**settings.model_dump(), "database_url": "postgresql+psycopg://x@127.0.0.1:1/none"}),
                     engine=down)
    with TestClient(app) as client:
        got = scrape(client)
    assert got[("prefloop_database_up", ())] == 0
    assert not [key for key in got if key[0] in ("prefloop_jobs", "prefloop_rankings_total")]
    assert any(key[0] == "prefloop_http_requests_total" for key in got)  # the process's own metrics still answer
