"""The `sft` export on both dialects: every demonstration, an annotator's and imported ones alike, with who
wrote it (`labeler`, as the other kinds say it), and the file imports back into another project as the same
demonstrations (and into its own project as nothing new)."""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow.parquet as pq
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.exports.schemas import ExportFilters
from app.exports.service import export_to_sink
from app.imports.schemas import ImportOptions, ImportOutcome
from app.imports.service import run_import
from app.labeling import assignment as tasks
from app.labeling import submission
from app.models import Project
from tests.factories import make_project, make_user
from tests.labeling.helpers import strict_ranking

IMPORTED = [
    {"prompt": "Say hello.", "completion": "Hello there!"},
    {"prompt": "Say hello.", "completion": "Hi!"},
    {"prompt": "Name a colour, \"quoted\".", "completion": "Teal,\nwith a newline."},
]


def _import(db: Session, project: Project, data: bytes, name: str) -> ImportOutcome:
    outcome = run_import(db, project, io.BytesIO(data), name, ImportOptions())
    db.commit()
    return outcome


def _export(engine: Engine, project: Project, fmt: str, **filters: Any) -> bytes:
    sink = io.BytesIO()
    export_to_sink(engine, project.id, "sft", fmt, sink, ExportFilters(**filters))
    return sink.getvalue()


def _rows(engine: Engine, project: Project, **filters: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _export(engine, project, "jsonl", **filters).splitlines()]


def test_the_sft_export_holds_imported_demonstrations_and_round_trips(db: Session, clean_engine: Engine,
                                                                      dialect: str) -> None:
    assert dialect in ("sqlite", "postgresql")
    source = make_project(db, k_min=2, k_max=4, settings={"labeling": {"demonstrations": True}})
    seeded = _import(db, source, json.dumps({"prompt": "Rank these.", "completions": ["a", "bb", "ccc"]}).encode(),
                     "prompts.jsonl")
    assert seeded.ok, seeded.issues
    annotator = make_user(db)
    task = tasks.next_task(db, source, annotator)
    assert task is not None
    submission.submit(db, source, annotator, task.id, strict_ranking(task, demonstration="  Written here.  "))
    db.commit()
    outcome = _import(db, source, b"".join(json.dumps(r).encode() + b"\n" for r in IMPORTED), "sft.jsonl")
    assert outcome.ok and outcome.counts["demonstrations_added"] == 3, outcome.issues

    rows = _rows(clean_engine, source)
    assert [(r["completion"], r["source"], r["labeler"]) for r in rows] == [
        ("Written here.", "annotator", "human"), ("Hello there!", "imported", "imported"),
        ("Hi!", "imported", "imported"), ("Teal,\nwith a newline.", "imported", "imported")]
    written, *imported = rows
    assert written["ranking_id"] is not None and written["annotator_id"] == annotator.id
    assert all(r["ranking_id"] is None and r["annotator_id"] is None for r in imported)
    assert [r["demonstration_id"] for r in rows] == sorted(r["demonstration_id"] for r in rows)
    assert [r["completion"] for r in _rows(clean_engine, source, annotator_id=annotator.id)] == ["Written here."]
    assert len(_rows(clean_engine, source, humans_only=True)) == 4  # imported labels stay, as in every kind
    parquet = pq.read_table(io.BytesIO(_export(clean_engine, source, "parquet"))).to_pylist()
    assert parquet == rows

    expected = sorted((r["prompt"], r["completion"]) for r in rows)
    for fmt in ("jsonl", "csv"):
        data = _export(clean_engine, source, fmt)
        target = make_project(db, name=f"sft-round-trip-{fmt}")
        outcome = _import(db, target, data, f"sft.{fmt}")
        assert outcome.ok, (fmt, outcome.issues)
        assert outcome.counts["prompts_added"] == 3 and outcome.counts["demonstrations_added"] == 4, fmt
        assert not any("is not mapped" in n for n in outcome.notes), (fmt, outcome.notes)
        again = _rows(clean_engine, target)
        assert sorted((r["prompt"], r["completion"]) for r in again) == expected, fmt
        assert {r["labeler"] for r in again} == {"imported"}, fmt
        assert _import(db, target, data, f"sft.{fmt}").counts["demonstrations_added"] == 0, fmt
        back = _import(db, source, data, f"sft.{fmt}")
        assert back.ok and back.counts["prompts_added"] == 0 and back.counts["demonstrations_added"] == 0, fmt
