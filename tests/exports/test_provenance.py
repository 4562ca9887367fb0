"""Every exported pair and ranking says who labelled it (`labeler`), and `humans_only` leaves out the AI
annotator's labels, on both dialects and on both the generic and the Postgres COPY path (issue 15)."""

from __future__ import annotations

import io
import json
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from app.exports.provenance import labeler
from app.exports.schemas import ExportFilters
from app.exports.service import export_to_sink
from app.imports.schemas import ImportOptions
from app.imports.service import run_import
from app.models import Ranking
from tests.factories import make_project

PAIRS = [{"prompt": f"Question {i}?", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(4)]
LABELERS = ["imported:label-studio", "llm-judge:judge-1", "reward-model", "human"]


def _export(engine: Engine, project_id: int, kind: str, fast: bool, **filters: Any) -> list[dict[str, Any]]:
    sink = io.BytesIO()
    export_to_sink(engine, project_id, kind, "jsonl", sink, ExportFilters(**filters), fast=fast)
    return [json.loads(line) for line in sink.getvalue().decode().splitlines()]


def test_labeler_and_humans_only(db: Session, clean_engine: Engine, dialect: str) -> None:
    project = make_project(db)
    data = "".join(json.dumps(r) + "\n" for r in PAIRS).encode()
    assert run_import(db, project, io.BytesIO(data), "pairs.jsonl", ImportOptions()).ok
    ids = list(db.scalars(select(Ranking.id).order_by(Ranking.id)))
    db.execute(update(Ranking).where(Ranking.id == ids[0]).values(client_info={"imported": {"tool": "label-studio"}}))
    db.execute(update(Ranking).where(Ranking.id == ids[1])
               .values(source="ai", client_info={"via": "ai-annotate", "ranker": "chat", "model": "judge-1"}))
    db.execute(update(Ranking).where(Ranking.id == ids[2])
               .values(source="ai", client_info={"via": "ai-annotate", "ranker": "reward-model"}))
    db.execute(update(Ranking).where(Ranking.id == ids[3]).values(source="human", client_info={}))
    db.commit()
    paths = (False, True) if dialect == "postgresql" else (False,)
    for fast in paths:
        assert [r["labeler"] for r in _export(clean_engine, project.id, "pairs", fast)] == LABELERS, fast
        humans = _export(clean_engine, project.id, "pairs", fast, humans_only=True)
        assert [r["labeler"] for r in humans] == ["imported:label-studio", "human"], fast
    assert [r["labeler"] for r in _export(clean_engine, project.id, "rankings", False)] == LABELERS
    assert len(_export(clean_engine, project.id, "rankings", False, humans_only=True)) == 2


def test_labeler_names() -> None:
    assert labeler("human", None) == "human"
    assert labeler("ai", {"ranker": "chat"}) == "llm-judge:unknown"
    assert labeler("ai", {"ranker": "something-else"}) == "ai"
    assert labeler("imported", {"imported": {"tool": ""}}) == "imported"
    assert labeler("ranking", {}) == "human"  # a comparison without its ranking row counts as a person's


CHAT = {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}],
        "chosen": [{"role": "assistant", "content": "Hello."}], "rejected": [{"role": "assistant", "content": "Go."}]}


def test_csv_of_conversations_is_refused_unless_flattened(db: Session, clean_engine: Engine,
                                                          client: Any) -> None:
    import pytest

    from app.exports.schemas import ExportOptions
    from app.exports.service import ExportError
    from tests.factories import api_token, make_user

    project = make_project(db)
    assert run_import(db, project, io.BytesIO((json.dumps(CHAT) + "\n").encode()), "chat.jsonl", ImportOptions()).ok
    headers = api_token(db, make_user(db, "admin"))
    db.commit()
    with pytest.raises(ExportError, match="--flatten-chat"):
        export_to_sink(clean_engine, project.id, "pairs", "csv", io.BytesIO())
    refused = client.get(f"/api/projects/{project.id}/export?kind=pairs&format=csv", headers=headers)
    assert refused.status_code == 400 and "flatten-chat" in refused.text
    sink = io.BytesIO()
    export_to_sink(clean_engine, project.id, "pairs", "csv", sink, options=ExportOptions(flatten_chat=True))
    text = sink.getvalue().decode()
    assert "system: Be brief.\n\nuser: Hi?" in text and '"role"' not in text
    flat = client.get(f"/api/projects/{project.id}/export?kind=pairs&format=csv&flatten_chat=true", headers=headers)
    assert flat.status_code == 200 and "user: Hi?" in flat.text
    # JSONL keeps TRL's conversational format untouched.
    jsonl = _export(clean_engine, project.id, "pairs", False)
    assert jsonl[0]["prompt"][1] == {"role": "user", "content": "Hi?"}
