"""The Postgres COPY fast path of the pairs JSONL export yields exactly the rows of the generic path."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from app.exports.schemas import ExportFilters, ExportOptions
from app.exports.service import export_to_sink
from app.imports.schemas import ImportOptions
from app.imports.service import run_import
from app.models import Comparison, Completion, ModelVersion, Project
from tests.factories import make_project, make_user

RECORDS = [
    {"prompt": "Plain \\ backslash,\ttab and \"quotes\"\nnewline", "chosen": "ok \\n literal", "rejected": "=1+1"},
    {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi ☃"}],
     "chosen": [{"role": "assistant", "content": "Hello!"}], "rejected": [{"role": "assistant", "content": "Go away."}]},
    {"prompt": "Another\r\nprompt", "chosen": "\u2028 line sep", "rejected": "tab\there"},
]


def _lines(engine: Engine, project: Project, fast: bool, **kwargs: Any) -> list[dict[str, Any]]:
    options = ExportOptions(margin_column=kwargs.pop("margin", False))
    sink = io.BytesIO()
    rows = export_to_sink(engine, project.id, "pairs", "jsonl", sink, ExportFilters(**kwargs), options, fast=fast)
    parsed = [json.loads(line) for line in sink.getvalue().decode().split("\n") if line]
    assert len(parsed) == rows
    return parsed


def test_fast_path_equals_generic_path(db: Session, clean_engine: Engine, dialect: str) -> None:
    if dialect != "postgresql":
        pytest.skip("the COPY fast path is Postgres-only; SQLite always takes the generic path")
    project = make_project(db)
    annotator = make_user(db)
    data = "".join(json.dumps(r) + "\n" for r in RECORDS).encode()
    outcome = run_import(db, project, io.BytesIO(data), "pairs.jsonl", ImportOptions())
    assert outcome.ok, outcome
    db.execute(update(Comparison).where(Comparison.id == 1).values(weight=0.6125, annotator_id=annotator.id))
    # Model versions on some completions only (others stay null), with a name JSON must escape.
    version = ModelVersion(project_id=project.id, kind="policy", name='policy "v2" \\ ☃', base_model="tiny")
    db.add(version)
    db.flush()
    first = db.get_one(Comparison, 1)
    db.execute(update(Completion).where(Completion.id == first.winner_id).values(model_version_id=version.id))
    both = db.get_one(Comparison, 3)
    db.execute(update(Completion).where(Completion.id.in_([both.winner_id, both.loser_id]))
               .values(model_version_id=version.id))
    # Timestamps whose default text forms differ between Postgres and Python: a trailing zero and no fraction at all.
    for cid, moment in ((1, datetime(2026, 3, 1, 8, 31, 38, 669880, tzinfo=UTC)),
                        (2, datetime(2026, 3, 1, 8, 31, 39, tzinfo=UTC))):
        db.execute(update(Comparison).where(Comparison.id == cid).values(created_at=moment))
    db.commit()

    for kwargs in ({}, {"margin": True}, {"annotator_id": annotator.id}, {"since": datetime(2000, 1, 1, tzinfo=UTC)},
                   {"model_version_id": version.id}):
        fast, generic = _lines(clean_engine, project, True, **kwargs), _lines(clean_engine, project, False, **kwargs)
        assert len(fast) == 3 or kwargs.get("annotator_id") or kwargs.get("model_version_id")
        assert fast == generic
        assert [list(row) for row in fast] == [list(row) for row in generic]  # same keys in the same order
    rows = _lines(clean_engine, project, True)
    assert [(r["chosen_model_version_id"], r["rejected_model_version_id"]) for r in rows] == [
        (version.id, None), (None, None), (version.id, version.id)]
    assert rows[0]["chosen_model_version_name"] == 'policy "v2" \\ ☃' and rows[1]["chosen_model_version_name"] is None
    assert [r["comparison_id"] for r in _lines(clean_engine, project, True, model_version_id=version.id)] == [3]
    completions = {cid: w for cid, w in db.execute(select(Comparison.id, Comparison.winner_id))}
    assert all(r["chosen_completion_id"] == completions[r["comparison_id"]] for r in rows)
    assert {type(row["weight"]) for row in rows} == {float}
    # Byte-identical text on both paths: fixed width, UTC, six fractional digits.
    assert [row["created_at"] for row in rows[:2]] == ["2026-03-01T08:31:38.669880+00:00",
                                                       "2026-03-01T08:31:39.000000+00:00"]
