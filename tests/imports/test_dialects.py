"""Exports of Label Studio, Argilla and OpenAI, and prefloop's own K-wise exports, imported on both dialects.

Each file is written in the tool's documented shape; the test checks what lands in the database (prompts,
completions, rankings with their ranks, comparisons with ties), what the notes say, and that a file of a
known shape that yields no answers fails with a message instead of importing nothing.
"""

from __future__ import annotations

import io
import json
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.exports.service import export_to_sink
from app.imports.schemas import ImportOptions, ImportOutcome
from app.imports.service import run_import
from app.models import Comparison, Completion, Project, Prompt, Ranking
from tests.factories import make_project


def _import(db: Session, project: Project, records: list[dict[str, Any]] | bytes, name: str = "export.json",
            ) -> ImportOutcome:
    data = records if isinstance(records, bytes) else json.dumps(records).encode()
    outcome = run_import(db, project, io.BytesIO(data), name, ImportOptions())
    db.commit()
    return outcome


def _rankings_by_text(db: Session, project: Project) -> list[tuple[str, dict[str, int]]]:
    """(prompt text, {completion text: rank}) per stored ranking, in id order."""
    out = []
    for ranking in db.scalars(select(Ranking).where(Ranking.project_id == project.id).order_by(Ranking.id)):
        texts = dict(db.execute(select(Completion.id, Completion.text)
                                .where(Completion.id.in_([int(c) for c in ranking.ranks]))).all())
        prompt = db.get(Prompt, ranking.prompt_id)
        assert prompt is not None
        out.append((prompt.text or json.dumps(prompt.messages), {texts[int(c)]: r for c, r in ranking.ranks.items()}))
    return out


LS_RANKER_TASK = {
    "id": 41,
    "data": {
        "prompt": "Explain recursion to a child.",
        "items": [
            {"id": "a", "title": "Answer A", "body": "A function that calls itself."},
            {"id": "b", "title": "Answer B", "body": "Like Russian dolls, each holding a smaller one."},
            {"id": "c", "title": "Answer C", "body": "Recursion is recursion."},
        ],
        "topic": "programming",
    },
    "annotations": [
        {"id": 7, "completed_by": 3, "was_cancelled": False, "result": [
            {"from_name": "rank", "to_name": "results", "type": "ranker",
             "value": {"ranker": {"rank": ["b", "a", "c"]}}},
            {"from_name": "why", "to_name": "prompt", "type": "textarea", "value": {"text": ["B is vivid."]}},
        ]},
        {"id": 8, "completed_by": {"id": 4, "email": "x@example.test"}, "was_cancelled": True, "result": []},
    ],
    "predictions": [{"model_version": "m1", "result": []}],
}

LS_PAIRWISE_TASK = {
    "id": 42,
    "data": {"prompt": "Name a prime.", "answer1": "Nine.", "answer2": "Seven."},
    "annotations": [{"id": 9, "completed_by": 5, "result": [
        {"from_name": "comparison", "to_name": "comparison", "type": "pairwise", "value": {"selected": "right"}},
    ]}],
}


def test_label_studio_ranker_and_pairwise_tasks(db: Session, dialect: str) -> None:
    project = make_project(db, k_min=2, k_max=9)
    outcome = _import(db, project, [LS_RANKER_TASK, LS_PAIRWISE_TASK])
    assert outcome.ok, outcome.issues
    assert outcome.counts["prompts_added"] == 2 and outcome.counts["completions_added"] == 5
    assert outcome.counts["rankings_added"] == 2 and outcome.counts["comparisons_added"] == 3 + 1
    assert _rankings_by_text(db, project) == [
        ("Explain recursion to a child.", {"Like Russian dolls, each holding a smaller one.": 1,
                                           "A function that calls itself.": 2, "Recursion is recursion.": 3}),
        ("Name a prime.", {"Seven.": 1, "Nine.": 2}),
    ]
    ranking = db.scalars(select(Ranking).order_by(Ranking.id)).first()
    assert ranking is not None and ranking.source == "imported" and ranking.rationale == "B is vivid."
    assert ranking.client_info["imported"] == {"tool": "label-studio", "annotation_id": 7, "annotator": 3}
    prompt = db.scalars(select(Prompt).where(Prompt.external_id == "41")).one()
    assert prompt.meta == {"imported": {"data.topic": "programming"}}
    notes = " | ".join(outcome.notes)
    assert "read 2 record(s) as label-studio" in notes
    assert "`data.topic` is not mapped" in notes
    assert "cancelled annotations are not imported (1×)" in notes
    assert "model predictions are not human rankings" in notes
    # The same export again is a no-op, not duplicates.
    again = _import(db, project, [LS_RANKER_TASK, LS_PAIRWISE_TASK])
    assert again.ok and again.counts["prompts_added"] == 0 and again.counts["rankings_added"] == 0


def test_label_studio_errors_name_the_task_and_field(db: Session, dialect: str) -> None:
    project = make_project(db, k_min=2, k_max=9)
    buckets = json.loads(json.dumps(LS_RANKER_TASK))
    buckets["annotations"][0]["result"][0]["value"]["ranker"] = {"good": ["b"], "bad": ["a", "c"]}
    no_answers = {"id": 5, "data": {"prompt": "Hi", "reply": "Hello"}, "annotations": []}
    outcome = _import(db, project, [buckets, no_answers])
    assert not outcome.ok
    reasons = {(i.line, i.field): i.reason for i in outcome.issues}
    assert any("buckets are groups, not an order" in r and f.startswith("annotations[0].result[0]")
               for (_, f), r in reasons.items())
    assert any("no answers found" in r for r in reasons.values())
    assert db.scalars(select(Prompt)).first() is None  # all or nothing


ARGILLA_NESTED = {
    "id": "rec-1",
    "status": "completed",
    "fields": {"instruction": "Write a haiku about rain.", "response_1": "Rain falls, soft and slow.",
               "response_2": "It is raining.", "response_3": "Drops drum on tin roofs."},
    "metadata": {"source": "synthetic"},
    "responses": {
        "ranking": [
            {"value": ["response_3", "response_1", "response_2"], "user_id": "u-1", "status": "submitted"},
            {"value": [{"value": "response_1", "rank": 1}, {"value": "response_3", "rank": 1},
                       {"value": "response_2", "rank": 2}], "user_id": "u-2", "status": "submitted"},
            {"value": ["response_2", "response_1", "response_3"], "user_id": "u-3", "status": "draft"},
        ],
        "rationale": [{"value": "3 has imagery.", "user_id": "u-1", "status": "submitted"}],
        "fluency": [{"value": 4, "user_id": "u-2", "status": "submitted"}],
    },
    "suggestions": {"ranking": {"value": ["response_2"], "agent": "gpt"}},
}

ARGILLA_FLAT = {
    "id": "rec-2",
    "status": "completed",
    "input": "Translate 'cat' to French.",
    "response_1": "chat",
    "response_2": "chien",
    "ranking.responses": [["response_1", "response_2"]],
    "ranking.responses.users": ["u-9"],
    "ranking.responses.status": ["submitted"],
}


def test_argilla_nested_and_flattened_records(db: Session, dialect: str) -> None:
    project = make_project(db, k_min=2, k_max=9)
    outcome = _import(db, project, [ARGILLA_NESTED, ARGILLA_FLAT])
    assert outcome.ok, outcome.issues
    assert outcome.counts["completions_added"] == 5 and outcome.counts["rankings_added"] == 3
    haiku, french = "Write a haiku about rain.", "Translate 'cat' to French."
    assert _rankings_by_text(db, project) == [
        (haiku, {"Drops drum on tin roofs.": 1, "Rain falls, soft and slow.": 2, "It is raining.": 3}),
        (haiku, {"Rain falls, soft and slow.": 1, "Drops drum on tin roofs.": 1, "It is raining.": 2}),
        (french, {"chat": 1, "chien": 2}),
    ]
    first, second, _ = db.scalars(select(Ranking).order_by(Ranking.id)).all()
    assert first.rationale == "3 has imagery." and first.client_info["imported"]["user_id"] == "u-1"
    assert second.client_info["imported"]["answer.fluency"] == 4
    ties = db.scalars(select(Comparison).where(Comparison.ranking_id == second.id, Comparison.is_tie)).all()
    assert len(ties) == 1
    prompt = db.scalars(select(Prompt).where(Prompt.external_id == "rec-1")).one()
    assert prompt.meta == {"source": "synthetic"}
    notes = " | ".join(outcome.notes)
    assert "draft responses are not imported (1×)" in notes and "suggestions are model output" in notes


def test_argilla_record_whose_options_name_no_field_fails(db: Session, dialect: str) -> None:
    project = make_project(db, k_min=2, k_max=9)
    bad = json.loads(json.dumps(ARGILLA_FLAT))
    bad["ranking.responses"] = [["response_1", "response_9"]]
    outcome = _import(db, project, [bad])
    assert not outcome.ok
    assert any("'response_9' names no field" in i.reason for i in outcome.issues)
    empty = {"id": "rec-3", "fields": {"prompt": "Hello?"}, "responses": {}}
    outcome = _import(db, project, [empty])
    assert not outcome.ok and "no answers found" in outcome.issues[0].reason


def test_openai_preference_jsonl(db: Session, dialect: str) -> None:
    project = make_project(db, k_min=2, k_max=9)
    line = {
        "input": {"messages": [{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "Capital of France?"}],
                  "tools": [], "parallel_tool_calls": True},
        "preferred_output": [{"role": "assistant", "content": "Paris."}],
        "non_preferred_output": [{"role": "assistant", "content": "It is Lyon."}],
    }
    outcome = _import(db, project, (json.dumps(line) + "\n").encode(), "prefs.jsonl")
    assert outcome.ok, outcome.issues
    assert outcome.counts["rankings_added"] == 1 and outcome.counts["comparisons_added"] == 1
    prompt = db.scalars(select(Prompt)).one()
    assert prompt.messages == line["input"]["messages"]
    assert prompt.meta == {"imported": {"input.parallel_tool_calls": True}}
    comparison = db.scalars(select(Comparison)).one()
    assert db.get(Completion, comparison.winner_id).text == "Paris."  # type: ignore[union-attr]
    assert any("`input.parallel_tool_calls` is not mapped" in n for n in outcome.notes)


def test_own_rankings_and_rm_exports_import_back(db: Session, clean_engine: Engine, dialect: str) -> None:
    source = make_project(db, name="source", k_min=2, k_max=9)
    assert _import(db, source, [LS_RANKER_TASK, LS_PAIRWISE_TASK, ARGILLA_NESTED]).ok
    expected = sorted(_rankings_by_text(db, source), key=repr)
    for kind in ("rankings", "rm"):
        sink = io.BytesIO()
        export_to_sink(clean_engine, source.id, kind, "jsonl", sink)
        target = make_project(db, name=f"from-{kind}", k_min=2, k_max=9)
        outcome = _import(db, target, sink.getvalue(), f"{kind}.jsonl")
        assert outcome.ok, (kind, outcome.issues)
        assert outcome.counts["prompts_added"] == 3, kind  # the two haiku rankings merge onto one prompt
        assert sorted(_rankings_by_text(db, target), key=repr) == expected, kind
        assert not any("is not mapped" in n for n in outcome.notes), (kind, outcome.notes)


def test_native_k_wise_rankings_validate_every_ranking(db: Session, dialect: str) -> None:
    project = make_project(db, k_min=2, k_max=9)
    record = {"prompt": "Pick one", "completions": ["x", "y", "z"],
              "rankings": [{"ranks": [1, 3, 3]}, {"ranks": [1, 1, 1]}, {"ranks": [1, 2]}, {"ranks": [0, 1, 2]}]}
    outcome = _import(db, project, (json.dumps(record) + "\n").encode(), "native.jsonl")
    fields = sorted(i.field for i in outcome.issues)
    assert fields == ["rankings[1].ranks", "rankings[2].ranks", "rankings[3].ranks"]
    record["rankings"] = [{"ranks": [1, 3, 3]}]
    outcome = _import(db, project, (json.dumps(record) + "\n").encode(), "native.jsonl")
    assert outcome.ok, outcome.issues
    ranking = db.scalars(select(Ranking)).one()
    assert sorted(ranking.ranks.values()) == [1, 2, 2]  # dense: 1, 3, 3 -> 1, 2, 2
