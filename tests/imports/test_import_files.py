"""Import service on both dialects: every format, the shared InstructGPT CSVs, bad files, idempotency."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.imports.schemas import ImportOptions
from app.imports.service import run_import, safe_file_name
from app.models import Comparison, Completion, ImportRecord, Prompt, Ranking
from tests.conftest import shared_data
from tests.factories import make_project


def _jsonl(*records: object) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def _import(db: Session, project, data: bytes, name: str = "data.jsonl", **options):  # type: ignore[no-untyped-def]
    outcome = run_import(db, project, io.BytesIO(data), name, ImportOptions(**options))
    db.commit()
    return outcome


def _counts(db: Session) -> tuple[int, int, int, int]:
    return (
        db.scalar(select(func.count()).select_from(Prompt)) or 0,
        db.scalar(select(func.count()).select_from(Completion)) or 0,
        db.scalar(select(func.count()).select_from(Ranking)) or 0,
        db.scalar(select(func.count()).select_from(Comparison)) or 0,
    )


def test_instructgpt_csvs_import_as_long_format(db: Session, dialect: str) -> None:
    assert dialect in ("sqlite", "postgresql")
    project = make_project(db)
    with shared_data("instructgpt-samples", "real_toxicity_samples.csv").open("rb") as source:
        tox = run_import(db, project, source, "real_toxicity_samples.csv", ImportOptions(
            prompt_column="context", completion_column="sample", model_column="model_type",
            key_columns="prompt_type,context"))
    assert tox.ok, tox.issues[:5]
    assert tox.counts["prompts_added"] == 300 and tox.counts["completions_added"] == 3600
    with shared_data("instructgpt-samples", "tldr_samples.csv").open("rb") as source:
        tldr = run_import(db, project, source, "tldr_samples.csv", ImportOptions(
            prompt_column="context", completion_column="sample", model_column="model_type"))
    assert tldr.ok and tldr.counts["prompts_added"] == 100 and tldr.counts["completions_added"] == 1200
    db.commit()
    per_prompt = db.execute(
        select(Completion.prompt_id, func.count()).group_by(Completion.prompt_id)
    ).all()
    assert len(per_prompt) == 400 and {n for _, n in per_prompt} == {12}
    tox_prompt = db.scalars(select(Prompt).where(Prompt.import_id == tox.import_id)).first()
    assert tox_prompt is not None and tox_prompt.meta["prompt_type"] in {"basic prompt", "respectful prompt", "biased prompt"}
    completion = db.scalars(select(Completion).where(Completion.prompt_id == tox_prompt.id)).first()
    assert completion is not None and isinstance(completion.meta["toxicity"], float) and completion.model_name
    tldr_prompt = db.scalars(select(Prompt).where(Prompt.import_id == tldr.import_id)).first()
    assert tldr_prompt is not None and tldr_prompt.meta["ref_text"] and tldr_prompt.text.endswith("TL;DR:")
    # Re-importing adds nothing.
    with shared_data("instructgpt-samples", "tldr_samples.csv").open("rb") as source:
        again = run_import(db, project, source, "tldr_samples.csv", ImportOptions(
            prompt_column="context", completion_column="sample", model_column="model_type"))
    assert again.counts["prompts_added"] == 0 and again.counts["prompts_skipped"] == 100


def test_toxicity_without_key_columns_reports_too_many_completions(db: Session) -> None:
    project = make_project(db)
    with shared_data("instructgpt-samples", "real_toxicity_samples.csv").open("rb") as source:
        outcome = run_import(db, project, source, "t.csv", ImportOptions(
            prompt_column="context", completion_column="sample", model_column="model_type"))
    assert not outcome.ok
    assert outcome.issue_count == 100 and all(i.field == "completions" for i in outcome.issues)


def test_jsonl_json_and_wide_csv(db: Session) -> None:
    project = make_project(db, k_min=2, k_max=4)
    jsonl = _jsonl(
        {"id": "a", "prompt": "Say hi", "completions": ["hi", {"text": "hello", "model": "m1"}], "metadata": {"x": 1}},
        {"messages": [{"role": "user", "content": "Chat?"}], "system": "be brief", "completions": ["yes", "no"]},
        {"prompt": "No completions yet"},
    )
    assert _import(db, project, jsonl).counts["prompts_added"] == 3
    array = json.dumps([{"id": "b", "prompt": "P1", "completions": ["x", "y"]}, {"id": "c", "prompt": "P2"}]).encode()
    assert _import(db, project, array, "arr.json").counts["prompts_added"] == 2
    csv_data = b"id,prompt,completion_1,completion_2,topic\r\nd,\"multi\r\nline\",one,two,=cmd\r\n"
    outcome = _import(db, project, b"\xef\xbb\xbf" + csv_data, "wide.csv")
    assert outcome.ok and outcome.counts["completions_added"] == 2
    prompt = db.scalars(select(Prompt).where(Prompt.external_id == "d")).one()
    assert prompt.text == "multi\r\nline" and prompt.meta == {"topic": "=cmd"}
    chat = db.scalars(select(Prompt).where(Prompt.system == "be brief")).one()
    assert chat.messages == [{"role": "user", "content": "Chat?"}] and chat.text is None


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_csv_sniffs_delimiters(db: Session, delimiter: str) -> None:
    project = make_project(db, k_min=2)
    data = f"prompt{delimiter}completion_1{delimiter}completion_2\nQ, with comma{delimiter}a{delimiter}b\n".encode()
    outcome = _import(db, project, data, "x.csv")
    assert outcome.ok and outcome.counts["completions_added"] == 2


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"prompt,completion\r\n", "no data rows"),
        (b"prompt\nCaf\xe9\n", "not valid UTF-8"),
        (b"question,answer\nq,a\n", "missing prompt"),
    ],
)
def test_csv_bad_files_are_clear_errors(db: Session, data: bytes, reason: str) -> None:
    project = make_project(db)
    outcome = _import(db, project, data, "x.csv", format="csv")
    assert not outcome.ok and any(reason in i.reason for i in outcome.issues), outcome.issues
    assert _counts(db) == (0, 0, 0, 0)


def test_bad_jsonl_imports_nothing_and_reports_every_line(db: Session) -> None:
    project = make_project(db, k_min=4, k_max=6)
    good = {"id": "ok", "prompt": "fine", "completions": ["a", "b", "c", "d"]}
    lines = [
        json.dumps(good),
        '{"prompt": "broken',                                                        # 2 malformed
        json.dumps({"completions": ["a", "b", "c", "d"]}),                            # 3 missing prompt
        json.dumps({"prompt": "few", "completions": ["a", "b"]}),                     # 4 below k_min
        json.dumps({"id": "ok", "prompt": "dup", "completions": ["a", "b", "c", "d"]}),  # 5 duplicate id
        json.dumps({"prompt": "many", "completions": [str(i) for i in range(17)]}),   # 6 over 16
        json.dumps({"prompt": "nul\u0000here"}),                                      # 7 NUL
        json.dumps({"prompt": "x" * (1024 * 1024 + 1)}),                               # 8 oversize
        json.dumps({"prompt": "see http://169.254.169.254/latest", "completions": ["\u202egnp.exe", "b", "c", "d"]}),
    ]
    data = ("\n".join(lines) + "\n").encode() + b'{"prompt": "\xff\xfe"}\n'             # 10 bad UTF-8
    outcome = _import(db, project, data)
    assert not outcome.ok
    by_line = {i.line: i for i in outcome.issues}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 8, 10]
    assert by_line[2].field == "json" and by_line[3].field == "prompt" and by_line[5].field == "id"
    assert by_line[4].field == by_line[6].field == "completions"
    assert "NUL" in by_line[7].reason and "1 MB" in by_line[8].reason and "byte" in by_line[10].reason
    assert _counts(db) == (0, 0, 0, 0)
    failed = db.scalars(select(ImportRecord)).one()
    assert failed.status == "failed" and len(failed.errors) == 8
    # The fixed file imports exactly once; bidi text and URLs are kept as text, never fetched.
    fixed = b"".join(lines[i].encode() + b"\n" for i in (0, 8))
    first = _import(db, project, fixed)
    assert first.ok and first.counts["prompts_added"] == 2
    second = _import(db, project, fixed)
    assert second.counts == {**second.counts, "prompts_added": 0, "prompts_skipped": 2, "completions_added": 0}
    assert _counts(db)[:2] == (2, 8)
    assert db.scalar(select(func.count()).where(Completion.text == "\u202egnp.exe")) == 1


def test_pairwise_files_import_comparisons(db: Session) -> None:
    project = make_project(db)
    hh = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke"
    data = _jsonl(
        {"prompt": "2+2?", "chosen": "4", "rejected": "5"},
        {"prompt": "2+2?", "chosen": "four", "rejected": "5"},
        {"chosen": hh + "\n\nAssistant: A pun.", "rejected": hh + "\n\nAssistant: No."},
        {"prompt": [{"role": "user", "content": "Capital?"}],
         "chosen": [{"role": "assistant", "content": "Paris"}], "rejected": [{"role": "assistant", "content": "Lyon"}]},
    )
    outcome = _import(db, project, data)
    assert outcome.ok, outcome.issues
    assert outcome.counts["prompts_added"] == 3 and outcome.counts["comparisons_added"] == 4
    assert _counts(db) == (3, 7, 4, 4)
    hh_prompt = db.scalars(select(Prompt).where(Prompt.messages.is_not(None)).order_by(Prompt.id)).first()
    assert hh_prompt is not None and hh_prompt.messages == [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Tell me a joke"},
    ]
    ranking = db.scalars(select(Ranking)).first()
    comparison = db.scalars(select(Comparison).where(Comparison.ranking_id == ranking.id)).one()
    assert ranking.source == comparison.source == "imported"
    assert ranking.ranks == {str(comparison.winner_id): 1, str(comparison.loser_id): 2}
    assert _import(db, project, data).counts["comparisons_added"] == 0


def test_identical_chosen_and_rejected_is_refused(db: Session) -> None:
    outcome = _import(db, make_project(db), _jsonl({"prompt": "p", "chosen": "same", "rejected": "same"}))
    assert not outcome.ok and outcome.issues[0].field == "rejected"


def test_unsafe_file_names_are_sanitised() -> None:
    assert safe_file_name("../../etc/passwd") == "passwd"
    assert safe_file_name("..\\evil<script>.html") == "evil_script_.html"
    long = safe_file_name("a" * 300 + ".svg")
    assert len(long) <= 200 and long.endswith(".svg")
    assert safe_file_name("") == "upload"
