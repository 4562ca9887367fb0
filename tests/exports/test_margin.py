"""The `margin` column of the pairs export, only on request: a pairwise choice's strength (1 slightly … 3 much
better), a ranking pair's rank gap. Without the option the export is unchanged (TRL's preference format plus
provenance), and pairwise ties stay out like every tie. Both export paths (generic rows, Postgres COPY) agree."""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow.parquet as pq
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.exports.columns import schema_for
from app.exports.schemas import ExportFilters, ExportOptions
from app.exports.service import export_to_sink
from app.labeling import assignment as tasks
from app.labeling import submission
from app.labeling.schemas import RankingIn
from app.labeling.slots import ensure_slots
from app.models import Project
from app.projects import service as projects
from app.projects.schemas import ProjectUpdate
from tests.factories import make_prompt, make_user
from tests.labeling.helpers import seeded_project


def _jsonl(engine: Engine, project: Project, margin: bool, fast: bool = True) -> list[dict[str, Any]]:
    sink = io.BytesIO()
    export_to_sink(engine, project.id, "pairs", "jsonl", sink, ExportFilters(), ExportOptions(margin_column=margin),
                   fast=fast)
    return [json.loads(line) for line in sink.getvalue().decode().splitlines()]


def test_margin_is_the_strength_of_pairwise_choices_only_on_request(db: Session, clean_engine: Engine) -> None:
    # One project that ranked three answers before it switched to pairwise: both kinds of pairs in one export.
    project = seeded_project(db, prompts=1, k=3)
    user = make_user(db)
    ranked = tasks.next_task(db, project, user)
    assert ranked is not None
    x, y, z = ranked.shown_completion_ids
    submission.submit(db, project, user, ranked.id, RankingIn(ranks={x: 1, y: 3, z: 2}))
    projects.update(db, project, ProjectUpdate(k_max=2, settings={"labeling": {"mode": "pairwise"}}))
    for _ in range(2):
        make_prompt(db, project, n_completions=2)
    ensure_slots(db, project)
    chosen = tasks.next_task(db, project, user)
    assert chosen is not None
    a, b = chosen.shown_completion_ids
    submission.submit(db, project, user, chosen.id, RankingIn(ranks={a: 2, b: 1}, strength=3))
    tied = tasks.next_task(db, project, user)
    assert tied is not None
    c, d = tied.shown_completion_ids
    submission.submit(db, project, user, tied.id, RankingIn(ranks={c: 1, d: 1}, strength=0))
    db.commit()

    plain = _jsonl(clean_engine, project, margin=False)
    assert len(plain) == 4  # three ranking pairs and the one pairwise preference; the tie stays out
    assert all(list(row) == schema_for("pairs", False).names for row in plain)  # same columns as ever
    with_margin = _jsonl(clean_engine, project, margin=True)
    margins = {(r["chosen_completion_id"], r["rejected_completion_id"]): r["margin"] for r in with_margin}
    assert margins == {(x, y): 2, (x, z): 1, (z, y): 1, (b, a): 3}
    assert [r["rank_gap"] for r in with_margin if r["chosen_completion_id"] == b] == [1]
    assert _jsonl(clean_engine, project, margin=True, fast=False) == with_margin  # COPY path on Postgres
    sink = io.BytesIO()
    export_to_sink(clean_engine, project.id, "pairs", "parquet", sink, options=ExportOptions(margin_column=True))
    table = pq.read_table(io.BytesIO(sink.getvalue()))
    assert sorted(table.column("margin").to_pylist()) == [1.0, 1.0, 2.0, 3.0]
    sink = io.BytesIO()
    export_to_sink(clean_engine, project.id, "pairs", "parquet", sink)
    assert "margin" not in pq.read_table(io.BytesIO(sink.getvalue())).column_names
