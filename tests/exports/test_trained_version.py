"""The trained-version filter on both dialects: an export of the rows that trained a model version is exactly
that version's lineage (comparisons of a reward model, demonstrations of an SFT policy, rollout prompts of a
PPO/RLOO policy), in every format, on the Postgres fast path too; the wrong kind or an unknown version is
refused with a message that says what applies."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.demonstrations import service as demonstrations
from app.exports.schemas import FORMATS, ExportFilters
from app.exports.service import ExportError, export_to_sink, resolve_filters, write_bundle
from app.imports.schemas import ImportOptions
from app.imports.service import run_import
from app.jobs import queue
from app.labeling import assignment as tasks
from app.labeling import submission
from app.loop import service as loop
from app.models import Comparison, ModelVersion, Project, Ranking
from app.registry import datasets
from app.registry import service as registry
from tests.conftest import TEST_SECRET
from tests.factories import api_token, login, make_user
from tests.labeling.helpers import seeded_project, strict_ranking


@dataclass
class Trained:
    project: Project
    reward: ModelVersion
    sft: ModelVersion
    ppo: ModelVersion
    untrained: ModelVersion


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def _version(db: Session, project: Project, kind: str, watermark: int | None = None) -> ModelVersion:
    job = queue.enqueue(db, "train_reward_model" if kind == "reward" else "train_policy", project.id)[0]
    return registry.start_version(db, project, kind, job_id=job.id, parent=None, base_model="tiny",
                                  training_config={}, data_watermark=watermark)


@pytest.fixture
def trained(db: Session) -> Trained:
    """Four human rankings (with demonstrations), imported pairs and demonstrations, an AI ranking; a reward model
    trained up to a watermark in the middle, an SFT policy on some demonstrations, a PPO policy on some prompts."""
    project = seeded_project(db, prompts=6, k=3, settings={"labeling": {"demonstrations": True}})
    annotator = make_user(db)
    for n in range(4):
        task = tasks.next_task(db, project, annotator)
        assert task is not None
        submission.submit(db, project, annotator, task.id, strict_ranking(task, demonstration=f"Ideal answer {n}."))
    pairs = _jsonl([{"prompt": f"Imported {n}?", "chosen": "good", "rejected": "bad"} for n in range(2)])
    assert run_import(db, project, io.BytesIO(pairs), "pairs.jsonl", ImportOptions()).ok
    sft = _jsonl([{"prompt": "Imported 0?", "completion": "An imported demonstration."},
                  {"prompt": "Say hi.", "completion": "Hi!"}])
    assert run_import(db, project, io.BytesIO(sft), "sft.jsonl", ImportOptions()).ok
    # The reward model's own AI ranking: before the watermark, yet never training data.
    ranked = db.scalars(select(Ranking).order_by(Ranking.id)).first()
    assert ranked is not None
    ai = Ranking(project_id=project.id, prompt_id=ranked.prompt_id, ranks=ranked.ranks, shown_order=ranked.shown_order,
                 source="ai", client_info={"ranker": datasets.REWARD_MODEL_RANKER})
    db.add(ai)
    db.flush()
    winner, loser = ranked.shown_order[:2]
    db.add(Comparison(project_id=project.id, prompt_id=ranked.prompt_id, ranking_id=ai.id, winner_id=winner,
                      loser_id=loser, winner_rank=1, loser_rank=2, rank_gap=1))
    db.flush()
    # A later ranking lies above the watermark.
    watermark = registry.settled_watermark(db, project.id)
    task = tasks.next_task(db, project, annotator)
    assert task is not None
    submission.submit(db, project, annotator, task.id, strict_ranking(task))

    reward = _version(db, project, "reward", watermark)
    snapshot = datasets.load_snapshot(db, project.id, watermark)
    registry.record_training(db, reward, checkpoint_path="/ckpt/rm", metrics={}, comparison_ids=snapshot.comparison_ids,
                             snapshot_hash=snapshot.snapshot_hash)
    sft_version = _version(db, project, "policy")
    sft_version.role = "sft"
    rows = demonstrations.for_training(db, project.id, demonstrations.watermark(db, project.id))
    registry.record_training(db, sft_version, checkpoint_path="/ckpt/sft", metrics={})
    demonstrations.record_lineage(db, sft_version.id, [d.id for d in rows[1:]])
    ppo = _version(db, project, "policy")
    registry.record_training(db, ppo, checkpoint_path="/ckpt/ppo", metrics={})
    prompt_ids = [pid for pid, _ in datasets.project_prompts(db, project.id)]
    loop.record_rollout_lineage(db, ppo.id, prompt_ids[::2])
    untrained = ModelVersion(project_id=project.id, kind="policy", name="policy-base", base_model="tiny",
                             checkpoint_path="tiny", status="active")
    db.add(untrained)
    db.commit()
    return Trained(project, reward, sft_version, ppo, untrained)


def _read(fmt: str, data: bytes) -> list[dict[str, Any]]:
    if fmt == "jsonl":
        return [json.loads(line) for line in data.decode().splitlines()]
    if fmt == "csv":
        return [{k: json.loads(v) if v.isdigit() else v for k, v in row.items()}
                for row in csv.DictReader(io.StringIO(data.decode()))]
    return pq.read_table(io.BytesIO(data)).to_pylist()


def _export(engine: Engine, project: Project, kind: str, version: ModelVersion | None, fmt: str = "jsonl",
            *, fast: bool = True) -> list[dict[str, Any]]:
    sink = io.BytesIO()
    filters = ExportFilters(trained_version_id=version.id if version else None)
    rows = export_to_sink(engine, project.id, kind, fmt, sink, filters, fast=fast)
    parsed = _read(fmt, sink.getvalue())
    assert len(parsed) == rows
    return parsed


def test_each_kind_is_exactly_the_lineage(db: Session, clean_engine: Engine, dialect: str,
                                          trained: Trained) -> None:
    assert dialect in ("sqlite", "postgresql")
    project, reward, sft, ppo = trained.project, trained.reward, trained.sft, trained.ppo
    lineage = registry.lineage(db, reward.id)
    everything = _export(clean_engine, project, "pairs", None)
    assert 0 < len(lineage) < len(everything)  # the filter has something to leave out
    for fmt in FORMATS:
        for fast in (True, False):
            rows = _export(clean_engine, project, "pairs", reward, fmt, fast=fast)
            assert [r["comparison_id"] for r in rows] == lineage, (fmt, fast)
    assert _export(clean_engine, project, "pairs", reward) == [r for r in everything if r["comparison_id"] in lineage]

    trained_rankings = set(db.scalars(select(Comparison.ranking_id).where(Comparison.id.in_(lineage))))
    trained_rankings.discard(None)
    rankings = _export(clean_engine, project, "rankings", reward)
    assert [r["ranking_id"] for r in rankings] == sorted(trained_rankings)
    assert "human" in {r["labeler"] for r in rankings} and "reward-model" not in {r["labeler"] for r in rankings}
    all_rankings = _export(clean_engine, project, "rankings", None)
    assert len(all_rankings) > len(rankings)
    rm = _export(clean_engine, project, "rm", reward)
    assert sorted(r["prompt_id"] for r in rm) == sorted(r["prompt_id"] for r in rankings)

    demos = _export(clean_engine, project, "sft", sft)
    assert [r["demonstration_id"] for r in demos] == demonstrations.lineage(db, sft.id)
    assert len(_export(clean_engine, project, "sft", None)) == len(demos) + 1
    assert {r["labeler"] for r in demos} == {"human", "imported"}

    prompts = _export(clean_engine, project, "prompts", ppo, "parquet")
    assert [r["prompt_id"] for r in prompts] == loop.rollout_prompts(db, ppo.id)


def test_kinds_without_that_lineage_and_unknown_versions_are_refused(db: Session, clean_engine: Engine,
                                                                     trained: Trained, tmp_path: Path) -> None:
    project = trained.project
    cases = [
        ("sft", trained.reward, "trained on comparisons; export kind pairs or rankings or rm"),
        ("pairs", trained.sft, "trained on demonstrations; export kind sft for its training rows, not pairs"),
        ("rankings", trained.ppo, "trained on prompts; export kind prompts"),
        ("consensus", trained.reward, "not consensus"),
        ("pairs", trained.untrained, "policy-base .* has no recorded training data"),
    ]
    for kind, version, message in cases:
        with pytest.raises(ExportError, match=message):
            _export(clean_engine, project, kind, version)
    with pytest.raises(ExportError, match="no recorded training data"):
        write_bundle(clean_engine, project.id, tmp_path / "bundle",
                     filters=ExportFilters(trained_version_id=trained.untrained.id))
    assert not (tmp_path / "bundle").exists()
    by_name = resolve_filters(db, project.id, None, None, None, trained_version=trained.reward.name)
    assert by_name.trained_version_id == trained.reward.id
    assert resolve_filters(db, project.id, None, None, None, trained_version=str(trained.sft.id)).trained_version_id \
        == trained.sft.id
    for ref in ("reward-v99", "999999"):
        with pytest.raises(ExportError, match=f"model version '{ref}' not found in this project"):
            resolve_filters(db, project.id, None, None, None, trained_version=ref)
    twin = ModelVersion(project_id=project.id, kind="policy", name=trained.reward.name, base_model="tiny")
    db.add(twin)
    db.flush()
    with pytest.raises(ExportError, match="2 model versions are named"):
        resolve_filters(db, project.id, None, None, None, trained_version=trained.reward.name)


def test_a_bundle_of_a_version_holds_the_kinds_its_lineage_names(clean_engine: Engine, trained: Trained,
                                                                 tmp_path: Path) -> None:
    result = write_bundle(clean_engine, trained.project.id, tmp_path / "rm", "jsonl", 0.5,
                          ExportFilters(trained_version_id=trained.reward.id))
    assert list(result.rows) == ["pairs", "rankings", "rm"]
    readme = (tmp_path / "rm" / "README.md").read_text()
    assert "config_name: sft" not in readme and "config_name: pairs\n  default: true" in readme
    assert sum(result.rows["pairs"].values()) == len(_export(clean_engine, trained.project, "pairs", trained.reward))


def test_http_and_cli_take_the_version_by_name(client: TestClient, db: Session, db_url: str,
                                               trained: Trained, tmp_path: Path) -> None:
    project, reward = trained.project, trained.reward
    lineage, sft_lineage = registry.lineage(db, reward.id), demonstrations.lineage(db, trained.sft.id)
    rollout_prompts = loop.rollout_prompts(db, trained.ppo.id)
    admin = make_user(db, "admin")
    headers = api_token(db, admin)
    db.commit()  # ends the session's read too: SQLite requests write (a token's last use)
    url = f"/api/projects/{project.id}/export?kind=pairs&format=jsonl&trained_version={reward.name}"
    response = client.get(url, headers=headers)
    assert response.status_code == 200
    assert [json.loads(line)["comparison_id"] for line in response.text.splitlines()] == lineage
    refused = client.get(f"/api/projects/{project.id}/export?kind=sft&trained_version={reward.name}", headers=headers)
    assert refused.status_code == 400 and "pairs or rankings or rm" in refused.text
    unknown = client.get(f"/api/projects/{project.id}/export?kind=pairs&trained_version=nope", headers=headers)
    assert unknown.status_code == 400 and "'nope' not found" in unknown.text
    login(client, admin.email)
    assert 'name="trained_version"' in client.get(f"/projects/{project.id}/export").text
    page = client.get(f"/projects/{project.id}/export/download?kind=prompts&format=csv&model_version="
                      f"&trained_version={trained.ppo.id}")
    assert page.status_code == 200 and len(page.text.splitlines()) == 1 + len(rollout_prompts)

    env = dict(os.environ, PREFLOOP_DATABASE_URL=db_url, PREFLOOP_ENV="test", PREFLOOP_SECRET_KEY=TEST_SECRET)
    target = tmp_path / "sft.jsonl"
    done = subprocess.run([sys.executable, "-m", "app.cli", "export", str(project.id), "--kind", "sft",
                           "--trained-version", trained.sft.name, "-o", str(target), "--json"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["demonstration_id"] for line in target.read_text().splitlines()] == sft_lineage
    wrong = subprocess.run([sys.executable, "-m", "app.cli", "export", str(project.id), "--kind", "pairs",
                            "--trained-version", trained.sft.name, "-o", "-"],
                           env=env, capture_output=True, text=True, timeout=120)
    assert wrong.returncode != 0 and "export kind sft" in wrong.stderr + wrong.stdout
