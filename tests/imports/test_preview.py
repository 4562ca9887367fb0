"""The upload preview: the first bytes of the shared TL;DR CSV give its columns, first rows and the mapping
`context` / `sample` / `model_type`; a failed import reports one line per kind of problem with a likely fix."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.imports.preview import PREVIEW_BYTES, group_issues, guess_mapping, preview
from app.imports.schemas import ImportIssue
from tests.conftest import shared_data
from tests.factories import login, make_project, make_user
from tests.imports.waiting import finish_page


def _tldr_head() -> bytes:
    with shared_data("instructgpt-samples", "tldr_samples.csv").open("rb") as source:
        return source.read(PREVIEW_BYTES)


def test_preview_of_the_tldr_csv_guesses_its_columns() -> None:
    shown = preview(_tldr_head(), "tldr_samples.csv")
    assert shown.format == "csv" and shown.layout == "long"
    assert shown.columns == ["model_type", "context", "ref_text", "sample"]
    assert shown.mapping == {"prompt_column": "context", "completion_column": "sample", "model_column": "model_type"}
    assert len(shown.rows) == 5 and all(len(cell) <= 160 for row in shown.rows for cell in row.values())
    assert shown.problems == []  # the cut through the last line is not reported as a broken row


def test_preview_recognises_other_shapes() -> None:
    pairs = preview(b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n', "x.jsonl")
    assert pairs.format == "jsonl" and pairs.layout == "preference pairs" and pairs.mapping == {}
    ls = preview(b'[{"id": 1, "data": {"prompt": "p"}, "annotations": []}]', "export.json")
    assert ls.layout == "Label Studio export"
    assert guess_mapping(["ID", "Question", "Answer", "model"]) == {
        "prompt_column": "Question", "completion_column": "Answer", "model_column": "model", "id_column": "ID"}


def test_grouped_issues_name_the_likely_prompt_column() -> None:
    issues = [ImportIssue(i, "prompt", "missing prompt (give `prompt` text or a `messages` list)") for i in range(2, 1202)]
    issues.append(ImportIssue(5, "json", "malformed JSON at column 3: x"))
    groups = group_issues(issues, ["", "model_type", "context", "ref_text", "sample"])
    assert [(g.field, g.count, g.lines) for g in groups] == [("prompt", 1200, [2, 3, 4, 5, 6]), ("json", 1, [5])]
    assert "did you mean `context`?" in groups[0].hint and groups[1].hint == ""


def test_preview_route_is_for_admins_and_the_report_groups_problems(client: TestClient, db: Session) -> None:
    admin, annotator = make_user(db, "admin"), make_user(db)
    project = make_project(db)
    db.commit()
    token = login(client, annotator.email)
    files = {"file": ("tldr_samples.csv", _tldr_head(), "text/csv")}
    refused = client.post(f"/projects/{project.id}/import/preview", files=files, headers={"X-CSRF-Token": token},
                          follow_redirects=False)
    assert refused.status_code == 403
    client.cookies.clear()
    token = login(client, admin.email)
    shown = client.post(f"/projects/{project.id}/import/preview", files=files, headers={"X-CSRF-Token": token})
    assert shown.status_code == 200
    assert '<option value="context" selected>' in shown.text and '<option value="sample" selected>' in shown.text
    # Without a mapping the whole file fails, and the page says so in one line with the fix, not 1,200 rows.
    with shared_data("instructgpt-samples", "tldr_samples.csv").open("rb") as source:
        failed = finish_page(client, client.post(f"/projects/{project.id}/import", data={"csrf_token": token},
                                                 files={"file": ("tldr_samples.csv", source.read(), "text/csv")}))
    assert failed.status_code == 200 and "Nothing imported" in failed.text
    assert "did you mean `context`?" in failed.text
    assert failed.text.count("<tr><td>") <= 205  # the first 200 problems, folded away, and the groups
