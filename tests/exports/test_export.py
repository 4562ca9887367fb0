"""Exports on both dialects: every kind × format, empty and full, the datasets bundle, CSV safety, filters, HTTP."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.demonstrations import service as demonstrations
from app.exports.schemas import FORMATS, KINDS, ExportFilters, ExportOptions
from app.exports.service import export_to_file, export_to_sink, write_bundle
from app.imports.schemas import ImportOptions
from app.imports.service import run_import
from app.models import Comparison, ModelVersion, Project, Ranking, User, utcnow
from tests.factories import api_token, login, make_project, make_prompt, make_user

PAIRS = b"".join(
    json.dumps(r).encode() + b"\n"
    for r in [
        {"prompt": "=SUM(A1:A9)", "chosen": "+1 good", "rejected": "@bad"},
        {"prompt": "Plain question?", "chosen": "Yes.", "rejected": "-No."},
    ]
)


def _read(fmt: str, data: bytes) -> list[dict[str, object]]:
    if fmt == "jsonl":
        return [json.loads(line) for line in data.decode().splitlines()]
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(data.decode())))
    return pq.read_table(io.BytesIO(data)).to_pylist()


def _export(engine: Engine, project: Project, kind: str, fmt: str, **filters: object) -> list[dict[str, object]]:
    sink = io.BytesIO()
    export_to_sink(engine, project.id, kind, fmt, sink, ExportFilters(**filters))  # type: ignore[arg-type]
    return _read(fmt, sink.getvalue())


def _human_ranking(db: Session, project: Project, annotator: User, version: ModelVersion | None = None) -> Ranking:
    """A 3-way ranking with a tie (ranks 1, 2, 2) and a demonstration, plus its comparisons."""
    prompt = make_prompt(db, project, n_completions=3)
    db.refresh(prompt)
    from sqlalchemy import select

    from app.models import Completion

    ids = list(db.scalars(select(Completion.id).where(Completion.prompt_id == prompt.id).order_by(Completion.id)))
    if version is not None:
        for completion in db.scalars(select(Completion).where(Completion.prompt_id == prompt.id)):
            completion.model_version_id = version.id
    ranks = {str(ids[0]): 1, str(ids[1]): 2, str(ids[2]): 2}
    ranking = Ranking(project_id=project.id, prompt_id=prompt.id, annotator_id=annotator.id, ranks=ranks,
                      shown_order=[ids[2], ids[0], ids[1]], demonstration="A written answer.", flags={"x": ["f"]},
                      wall_seconds=12.5)
    db.add(ranking)
    db.flush()
    demonstrations.sync_ranking(db, ranking)  # as a submission does: the demonstration becomes a row
    for winner, loser, tie in ((ids[0], ids[1], False), (ids[0], ids[2], False), (ids[1], ids[2], True)):
        db.add(Comparison(project_id=project.id, prompt_id=prompt.id, ranking_id=ranking.id, winner_id=winner,
                          loser_id=loser, winner_rank=int(ranks[str(winner)]), loser_rank=int(ranks[str(loser)]),
                          rank_gap=int(ranks[str(loser)]) - int(ranks[str(winner)]), is_tie=tie,
                          annotator_id=annotator.id))
    db.flush()
    return ranking


@pytest.fixture
def filled(db: Session) -> tuple[Project, User]:
    project = make_project(db)
    annotator = make_user(db)
    outcome = run_import(db, project, io.BytesIO(PAIRS), "pairs.jsonl", ImportOptions())
    assert outcome.ok
    version = ModelVersion(project_id=project.id, kind="policy", name="policy-v1", base_model="tiny")
    db.add(version)
    db.flush()
    _human_ranking(db, project, annotator, version)
    db.commit()
    return project, annotator


def test_every_kind_and_format_is_valid_when_empty(db: Session, clean_engine: Engine) -> None:
    project = make_project(db)
    db.commit()
    for kind in KINDS:
        for fmt in FORMATS:
            sink = io.BytesIO()
            assert export_to_sink(clean_engine, project.id, kind, fmt, sink) == 0
            data = sink.getvalue()
            if fmt == "csv":
                assert data.count(b"\r\n") == 1 and data.startswith(b"prompt" if kind == "pairs" else b"")
            assert _read(fmt, data) == []


def test_every_kind_and_format_has_rows(filled: tuple[Project, User], clean_engine: Engine) -> None:
    project, _ = filled
    expected = {"pairs": 4, "rankings": 3, "rm": 3, "prompts": 3, "sft": 1}
    for kind, count in expected.items():
        for fmt in FORMATS:
            assert len(_export(clean_engine, project, kind, fmt)) == count, (kind, fmt)
    rows = _export(clean_engine, project, "pairs", "jsonl")
    assert all(r["chosen_rank"] < r["rejected_rank"] for r in rows)  # the tied pair is never exported
    assert {r["source"] for r in rows} == {"imported", "ranking"}
    assert "margin" not in rows[0]
    human = [r for r in _export(clean_engine, project, "rankings", "jsonl") if r["source"] == "human"][0]
    assert human["ranks"] == [2, 1, 2] and human["completion_ids"] == human["shown_order"]
    assert json.loads(human["flags"]) == {"x": ["f"]} and human["wall_seconds"] == 12.5
    rm = [r for r in _export(clean_engine, project, "rm", "jsonl") if len(r["completion"]) == 3][0]
    assert rm["ranking"] == [2, 1, 2]
    sft = _export(clean_engine, project, "sft", "jsonl")[0]
    assert sft["completion"] == "A written answer."
    sink = io.BytesIO()
    export_to_sink(clean_engine, project.id, "pairs", "jsonl", sink, options=ExportOptions(margin_column=True))
    assert all(json.loads(line)["margin"] == json.loads(line)["rank_gap"] for line in sink.getvalue().splitlines())


def test_csv_neutralises_formulas(filled: tuple[Project, User], clean_engine: Engine) -> None:
    project, _ = filled
    rows = _export(clean_engine, project, "pairs", "csv")
    cells = {value for row in rows for value in row.values()}
    assert "'=SUM(A1:A9)" in cells and "'+1 good" in cells and "'@bad" in cells and "'-No." in cells
    assert not any(v and v[0] in "=+-@" for v in cells)


def test_bundle_round_trips_through_datasets(filled: tuple[Project, User], clean_engine: Engine,
                                             tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    project, _ = filled
    result = write_bundle(clean_engine, project.id, tmp_path / "bundle", test_fraction=0.5)
    readme = (tmp_path / "bundle" / "README.md").read_text()
    for kind in KINDS:
        assert f"config_name: {kind}" in readme
    loaded = datasets.load_dataset(str(tmp_path / "bundle"), "pairs", cache_dir=str(tmp_path / "hf-cache"))
    assert sum(len(loaded[s]) for s in loaded) == 4 == sum(result.rows["pairs"].values())
    exported = {r["comparison_id"]: r for r in _export(clean_engine, project, "pairs", "jsonl")}
    for split in loaded:
        for row in loaded[split]:
            assert row == exported[row["comparison_id"]]
    # The split is by prompt: no prompt in both.
    if len(loaded) == 2:
        assert not {r["prompt_id"] for r in loaded["train"]} & {r["prompt_id"] for r in loaded["test"]}
    rankings = datasets.load_dataset(str(tmp_path / "bundle"), "rankings", cache_dir=str(tmp_path / "hf-cache"))
    by_id = {r["ranking_id"]: r for r in _export(clean_engine, project, "rankings", "jsonl")}
    for split in rankings:
        for row in rankings[split]:
            assert row["model_version_ids"] == by_id[row["ranking_id"]]["model_version_ids"]
    again = write_bundle(clean_engine, project.id, tmp_path / "bundle2", test_fraction=0.5)
    assert again.rows == result.rows


def test_rows_carry_completion_ids_and_model_versions(db: Session, clean_engine: Engine) -> None:
    project = make_project(db)
    annotator = make_user(db)
    assert run_import(db, project, io.BytesIO(PAIRS), "pairs.jsonl", ImportOptions()).ok
    old, new = (ModelVersion(project_id=project.id, kind="policy", name=name, base_model="tiny")
                for name in ("sft", "policy-v2"))
    db.add_all([old, new])
    db.flush()
    ranking = _human_ranking(db, project, annotator, old)
    from sqlalchemy import select

    from app.models import Completion

    # Versions meet side by side: the best completion comes from the new policy, the others from the old one.
    best = min(int(c) for c, rank in ranking.ranks.items() if rank == 1)
    db.get_one(Completion, best).model_version_id = new.id
    db.commit()
    versions = {cid: v for cid, v in db.execute(select(Completion.id, Completion.model_version_id))}
    names = {None: None, old.id: "sft", new.id: "policy-v2"}

    for fmt in FORMATS:
        pairs = _export(clean_engine, project, "pairs", fmt)
        assert len(pairs) == 4, fmt
        for row in pairs:
            got = {k: _typed(row[k]) for k in row if "completion_id" in k or "model_version" in k}
            chosen, rejected = got["chosen_completion_id"], got["rejected_completion_id"]
            assert got["chosen_model_version_id"] == versions[chosen], fmt
            assert got["rejected_model_version_id"] == versions[rejected], fmt
            assert got["chosen_model_version_name"] == names[versions[chosen]], fmt
            assert got["rejected_model_version_name"] == names[versions[rejected]], fmt
        human = [r for r in pairs if _typed(r["group_id"]) == ranking.id]
        assert {_typed(r["chosen_model_version_id"]) for r in human} == {new.id}
        assert {_typed(r["rejected_model_version_id"]) for r in human} == {old.id}
        imported = [r for r in pairs if _typed(r["group_id"]) != ranking.id]
        assert all(_typed(r["chosen_model_version_id"]) is None is _typed(r["rejected_model_version_name"])
                   for r in imported)

        for row in _export(clean_engine, project, "rankings", fmt):
            ids, ids_versions, ids_names = (_typed(row[k]) for k in
                                            ("completion_ids", "model_version_ids", "model_version_names"))
            assert ids_versions == [versions[c] for c in ids], fmt
            assert ids_names == [names[versions[c]] for c in ids], fmt
    # The version filter and the version columns agree.
    filtered = _export(clean_engine, project, "pairs", "jsonl", model_version_id=old.id)
    assert filtered == [] and len(_export(clean_engine, project, "rankings", "jsonl", model_version_id=new.id)) == 0


def _typed(value: object) -> object:
    """A CSV cell back as JSON would have it (ints, lists, null); other formats pass through."""
    if not isinstance(value, str):
        return value
    if value == "":
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value


def test_filters(db: Session, clean_engine: Engine) -> None:
    project = make_project(db)
    alice, bob = make_user(db), make_user(db)
    version = ModelVersion(project_id=project.id, kind="policy", name="v1", base_model="tiny")
    db.add(version)
    db.flush()
    _human_ranking(db, project, alice)
    late = _human_ranking(db, project, bob, version)
    for comparison in db.query(Comparison).filter(Comparison.ranking_id == late.id):
        comparison.created_at = utcnow() + timedelta(days=2)
    late.created_at = utcnow() + timedelta(days=2)
    db.commit()
    assert len(_export(clean_engine, project, "pairs", "jsonl")) == 4
    assert {r["annotator_id"] for r in _export(clean_engine, project, "pairs", "jsonl", annotator_id=bob.id)} == {bob.id}
    assert len(_export(clean_engine, project, "pairs", "jsonl", since=utcnow() + timedelta(days=1))) == 2
    assert len(_export(clean_engine, project, "pairs", "jsonl", model_version_id=version.id)) == 2
    assert len(_export(clean_engine, project, "rankings", "jsonl", model_version_id=version.id)) == 1


def test_export_to_file_is_atomic(filled: tuple[Project, User], clean_engine: Engine, tmp_path: Path) -> None:
    project, _ = filled
    target = tmp_path / "pairs.parquet"
    assert export_to_file(clean_engine, project.id, "pairs", "parquet", target) == 4
    assert pq.read_table(target).num_rows == 4 and [p.name for p in tmp_path.iterdir()] == ["pairs.parquet"]


def test_export_file_mode_follows_the_umask(filled: tuple[Project, User], clean_engine: Engine,
                                            tmp_path: Path) -> None:
    project, _ = filled
    previous = os.umask(0o027)
    try:
        export_to_file(clean_engine, project.id, "pairs", "jsonl", tmp_path / "pairs.jsonl")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "pairs.jsonl").stat().st_mode) == 0o640  # not mkstemp's 0600


def test_http_export_streams_for_admins(client: TestClient, db: Session, filled: tuple[Project, User]) -> None:
    project, _ = filled
    admin = make_user(db, "admin")
    headers = api_token(db, admin)
    db.commit()
    response = client.get(f"/api/projects/{project.id}/export?kind=pairs&format=csv", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-disposition"] == f'attachment; filename="prefloop-project-{project.id}-pairs.csv"'
    assert len(list(csv.DictReader(io.StringIO(response.text)))) == 4
    assert client.get("/api/projects/999999/export", headers=headers).status_code == 404
    assert client.get(f"/api/projects/{project.id}/export?kind=nope", headers=headers).status_code == 422
    login(client, admin.email)
    page = client.get(f"/projects/{project.id}/export")
    assert page.status_code == 200 and "Download" in page.text
    download = client.get(f"/projects/{project.id}/export/download?kind=rm&format=parquet&model_version=")
    assert download.status_code == 200 and pq.read_table(io.BytesIO(download.content)).num_rows == 3
