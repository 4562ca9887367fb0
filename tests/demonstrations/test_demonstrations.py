"""Demonstrations as data, on both dialects: written by annotators (at submit, kept in step on revision) and
imported from prompt-completion files (plain, TRL conversational, the project's own `sft` export as JSONL and
CSV), never twice the same text for a prompt, so importing a file again adds nothing."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.exports.service import export_to_sink
from app.imports.schemas import ImportOptions, ImportOutcome
from app.imports.service import run_import
from app.labeling import assignment as tasks
from app.labeling import revision, submission
from app.models import Completion, Demonstration, Project, Prompt
from tests.factories import make_project, make_user
from tests.labeling.helpers import seeded_project, strict_ranking


def _import(db: Session, project: Project, data: bytes, name: str) -> ImportOutcome:
    outcome = run_import(db, project, io.BytesIO(data), name, ImportOptions())
    db.commit()
    return outcome


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def _demonstrations(db: Session, project: Project) -> list[tuple[Any, str, str]]:
    """(prompt text or messages, demonstration text, source) per demonstration of the project, in id order."""
    rows = db.execute(select(Prompt.text, Prompt.messages, Demonstration.text, Demonstration.source)
                      .join(Prompt, Prompt.id == Demonstration.prompt_id)
                      .where(Prompt.project_id == project.id).order_by(Demonstration.id))
    return [(text if text is not None else messages, demo, source) for text, messages, demo, source in rows]


def test_a_prompt_completion_record_keeps_its_completion_as_a_demonstration(db: Session, dialect: str) -> None:
    assert dialect in ("sqlite", "postgresql")
    project = make_project(db, k_min=2, k_max=4)
    data = _jsonl([
        {"prompt": "Say hello.", "completion": "Hello there!"},
        {"prompt": [{"role": "user", "content": "Name a colour."}],
         "completion": [{"role": "assistant", "content": "Teal."}]},  # TRL's conversational prompt-completion
        {"prompt": "Say hello.", "completion": "Hi!"},  # a second demonstration of the same prompt merges
    ])
    outcome = _import(db, project, data, "sft.jsonl")
    assert outcome.ok, outcome.issues
    assert outcome.counts["prompts_added"] == 2 and outcome.counts["demonstrations_added"] == 3
    assert outcome.counts["completions_added"] == 0  # a demonstration is not a candidate to rank
    assert "read 3 record(s) as sft export(s)" in outcome.notes
    assert _demonstrations(db, project) == [
        ("Say hello.", "Hello there!", "imported"), ("Say hello.", "Hi!", "imported"),
        ([{"role": "user", "content": "Name a colour."}], "Teal.", "imported"),
    ]
    demo = db.scalars(select(Demonstration)).first()
    assert demo is not None and demo.import_id == outcome.import_id and demo.ranking_id is None
    again = _import(db, project, data, "sft.jsonl")
    assert again.ok and again.counts["prompts_added"] == 0 and again.counts["demonstrations_added"] == 0
    assert len(_demonstrations(db, project)) == 3
    # A canonical record may carry demonstrations beside its candidates; a prompt already there gets the
    # demonstrations it lacks.
    more = _import(db, project, _jsonl([
        {"prompt": "Say hello.", "demonstrations": ["Hi!", "Good day."]},
        {"prompt": "Pick one.", "completions": ["A", "B"], "demonstrations": ["A, because it is first."]},
    ]), "more.jsonl")
    assert more.ok, more.issues
    assert more.counts["prompts_added"] == 1 and more.counts["demonstrations_added"] == 2
    assert more.counts["completions_added"] == 2
    bad = _import(db, project, _jsonl([{"prompt": "x", "completion": [{"role": "user", "content": "y"}]}]), "b.jsonl")
    assert not bad.ok and bad.issues[0].field == "completion"


def test_the_sft_export_imports_back_as_demonstrations(db: Session, clean_engine: Engine, dialect: str) -> None:
    source = make_project(db, k_min=2, k_max=4, settings={"labeling": {"demonstrations": True}})
    seeded = _import(db, source, _jsonl([{"id": f"q{n}", "prompt": f"Question {n}?", "completions": ["a", "bb", "ccc"]}
                                         for n in range(2)]), "prompts.jsonl")
    assert seeded.ok, seeded.issues
    annotator = make_user(db)
    written = {}
    for n in range(2):
        task = tasks.next_task(db, source, annotator)
        assert task is not None
        submission.submit(db, source, annotator, task.id, strict_ranking(task, demonstration=f" Ideal answer {n}. "))
        written[task.prompt_id] = f"Ideal answer {n}."
    db.commit()
    stored = db.scalars(select(Demonstration).order_by(Demonstration.id)).all()
    assert [(d.prompt_id, d.text, d.source, d.annotator_id) for d in stored] == [
        (pid, text, "annotator", annotator.id) for pid, text in written.items()]
    assert all(d.ranking_id is not None for d in stored)

    for fmt in ("jsonl", "csv"):
        sink = io.BytesIO()
        assert export_to_sink(clean_engine, source.id, "sft", fmt, sink) == 2
        if fmt == "csv":
            assert set(next(csv.reader(io.StringIO(sink.getvalue().decode())))) >= {"prompt", "completion", "ranking_id"}
        target = make_project(db, name=f"from-sft-{fmt}", k_min=2, k_max=4)
        outcome = _import(db, target, sink.getvalue(), f"sft.{fmt}")
        assert outcome.ok, (fmt, outcome.issues)
        assert outcome.counts["prompts_added"] == 2 and outcome.counts["demonstrations_added"] == 2, fmt
        assert sorted(d for _, d, _ in _demonstrations(db, target)) == sorted(written.values()), fmt
        assert not any("is not mapped" in n for n in outcome.notes), (fmt, outcome.notes)
        assert _import(db, target, sink.getvalue(), f"sft.{fmt}").counts["demonstrations_added"] == 0, fmt
        # Back into the project it came from (its prompts have ids of their own, the export has none): the
        # same prompt texts are found, and their demonstrations are there already.
        back = _import(db, source, sink.getvalue(), f"sft.{fmt}")
        assert back.counts["prompts_added"] == 0 and back.counts["demonstrations_added"] == 0, fmt


def test_a_revised_ranking_keeps_its_demonstration_in_step(db: Session, dialect: str) -> None:
    project = seeded_project(db, prompts=1, k=3, settings={"labeling": {"demonstrations": True}})
    annotator = make_user(db)
    task = tasks.next_task(db, project, annotator)
    assert task is not None
    submission.submit(db, project, annotator, task.id, strict_ranking(task))
    db.commit()
    assert db.scalars(select(Demonstration)).all() == []  # no demonstration written, no row
    revision.revise(db, project, annotator, task.id, strict_ranking(task, demonstration="Better answer."))
    db.commit()
    assert [d.text for d in db.scalars(select(Demonstration))] == ["Better answer."]
    revision.revise(db, project, annotator, task.id, strict_ranking(task, rationale="changed my mind"))
    db.commit()
    assert db.scalars(select(Demonstration)).all() == []
    assert db.scalars(select(Completion.id)).all()  # the candidates are untouched
