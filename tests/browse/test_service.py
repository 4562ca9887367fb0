"""The data browser's services and queries on a real database: full-text search (LIKE wildcards taken
literally), every filter, paging with a capped count, a ranking as shown, gold from a ranking, archive,
restore and delete with their refusals, and skipped tasks as CSV."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.browse import queries, schemas, service
from app.browse.schemas import PAGE_SIZE, DataFilter
from app.errors import Conflict, Invalid
from app.models import Completion, Prompt, Slot
from app.quality.stats.gold import GoldSpec, score_gold
from tests.browse.scene import FLAG, RATIONALE, SKIP_REASON, Scene, build
from tests.factories import make_prompt


@pytest.fixture
def scene(db: Session) -> Scene:
    return build(db)


def _ids(db: Session, scene: Scene, **f: object) -> set[int]:
    page = service.list_prompts(db, scene.project, DataFilter(**f))  # type: ignore[arg-type]
    return {row.prompt.id for row in page.rows}


def test_like_pattern_escapes_wildcards() -> None:
    assert queries.like_pattern("100%_x\\") == "%100\\%\\_x\\\\%"


def test_search_finds_prompt_and_completion_words_case_insensitively(db: Session, scene: Scene, dialect: str) -> None:
    assert dialect in ("sqlite", "postgresql")
    assert _ids(db, scene, q="TROMSØ".lower()) == {scene.aurora.id}
    assert _ids(db, scene, q="sourdough") == {scene.plain.id}
    assert _ids(db, scene, q="answer7WORD") == {scene.aurora.id}  # a word only in one completion
    assert _ids(db, scene, q="flour daily") == {scene.plain.id}
    assert _ids(db, scene, q="no such words anywhere") == set()


def test_search_takes_percent_and_underscore_literally(db: Session, scene: Scene) -> None:
    assert _ids(db, scene, q="100%") == {scene.wild.id}
    assert _ids(db, scene, q="pure_water") == {scene.wild.id}
    assert _ids(db, scene, q="%") == {scene.wild.id}  # not "everything"
    assert _ids(db, scene, q="_") == {scene.wild.id}


def test_each_filter(db: Session, scene: Scene) -> None:
    everything = {scene.aurora.id, scene.wild.id, scene.plain.id}
    assert _ids(db, scene) == everything
    assert _ids(db, scene, annotator=scene.alice.id) == {scene.aurora.id}
    assert _ids(db, scene, annotator=scene.bob.id) == set()  # bob only skipped
    assert _ids(db, scene, model_version=scene.version.id) == {scene.plain.id}
    assert _ids(db, scene, round=1) == {scene.plain.id}
    assert _ids(db, scene, round=0) == everything
    assert _ids(db, scene, flag=FLAG) == {scene.aurora.id}
    assert _ids(db, scene, flag="*") == {scene.aurora.id}
    assert _ids(db, scene, flag="harmless") == set()
    assert _ids(db, scene, status="unranked") == {scene.wild.id, scene.plain.id}
    assert _ids(db, scene, status="pending") == everything  # N = 2: the aurora prompt has one slot left
    assert _ids(db, scene, gold="yes") == set()
    assert _ids(db, scene, gold="no") == everything
    assert _ids(db, scene, status="archived") == set()


def test_rankings_list_filters(db: Session, scene: Scene) -> None:
    def ids(**f: object) -> list[int]:
        return [r.id for r in service.list_rankings(db, scene.project, DataFilter(**f)).rows]  # type: ignore[arg-type]

    assert ids() == [scene.aurora_ranking.id]
    assert ids(annotator=scene.alice.id) == [scene.aurora_ranking.id]
    assert ids(annotator=scene.bob.id) == []
    assert ids(flag=FLAG) == [scene.aurora_ranking.id]
    assert ids(flag="harmless") == []
    assert ids(q="invents a GLACIER") == [scene.aurora_ranking.id]  # the rationale is searched too
    assert ids(round=1) == []
    assert ids(gold="yes") == []
    row = service.list_rankings(db, scene.project, DataFilter()).rows[0]
    assert (row.annotator, row.shown, row.flagged, row.has_rationale) == ("Alice", 9, 1, True)


def test_paging_and_capped_count(db: Session, scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    made = [make_prompt(db, scene.project, n_completions=2, text=f"Bulk prompt {i}") for i in range(PAGE_SIZE + 3)]
    db.commit()
    first = service.list_prompts(db, scene.project, DataFilter(q="bulk prompt"))
    second = service.list_prompts(db, scene.project, DataFilter(q="bulk prompt", page=2))
    assert (first.total, first.pages, len(first.rows), len(second.rows)) == (PAGE_SIZE + 3, 2, PAGE_SIZE, 3)
    seen = [r.prompt.id for r in first.rows + second.rows]
    assert seen == sorted((p.id for p in made), reverse=True)  # newest first, no overlap, nothing missed
    monkeypatch.setattr(queries, "COUNT_CAP", 5)
    monkeypatch.setattr(schemas, "COUNT_CAP", 5)
    capped = service.list_prompts(db, scene.project, DataFilter(q="bulk prompt"))
    assert capped.total == 5 and capped.capped


def test_ranking_as_the_annotator_saw_it(db: Session, scene: Scene) -> None:
    view = service.ranking_view(db, scene.project, scene.aurora_ranking.id)
    shown = [int(c) for c in scene.aurora_ranking.shown_order]
    assert [i.letter for i in view.items] == list("ABCDEFGHI")
    assert [i.completion.id for i in view.items] == shown  # display order, not position order
    assert [i.rank for i in view.items] == [1, 2, 2, 3, 4, 5, 6, 7, 8]
    assert [i.tied for i in view.items] == [False, True, True] + [False] * 6
    assert view.items[0].flags == [FLAG] and all(not i.flags for i in view.items[1:])
    assert view.order == "A > B = C > D > E > F > G > H > I"
    assert view.rationale == RATIONALE
    assert (view.active_seconds, view.wall_seconds, view.annotator) == (42.0, 95.0, "Alice")


def test_gold_spec_from_ranks_skips_ties() -> None:
    spec = service.gold_spec_from_ranks({"1": 1, "2": 2, "3": 2, "4": 3})
    assert spec == [{"better": 1, "worse": 2}, {"better": 1, "worse": 3},
                    {"better": 2, "worse": 4}, {"better": 3, "worse": 4}]
    assert service.gold_spec_from_ranks({"1": 1, "2": 1}) == []


def test_mark_gold_from_a_ranking(db: Session, scene: Scene) -> None:
    prompt = service.mark_gold_from_ranking(db, scene.project, scene.aurora_ranking.id)
    db.commit()
    assert prompt.is_gold and prompt.gold_spec
    # The ranking it came from satisfies its own spec completely; free slots are gone.
    spec = GoldSpec.parse(prompt.id, prompt.gold_spec["constraints"])
    ranks = {int(k): v for k, v in scene.aurora_ranking.ranks.items()}
    assert score_gold(ranks, spec).satisfied == len(spec.constraints) == 2 + 2 + 5
    assert db.scalar(select(func.count()).select_from(Slot).where(Slot.prompt_id == prompt.id,
                                                                  Slot.status == "open")) == 0
    assert service.list_prompts(db, scene.project, DataFilter(gold="yes")).rows[0].prompt.id == prompt.id


def test_mark_gold_refuses_a_ranking_of_all_ties(db: Session, scene: Scene) -> None:
    ranking = scene.aurora_ranking
    ranking.ranks = dict.fromkeys(ranking.ranks, 1)
    db.commit()
    with pytest.raises(Invalid, match="ties every answer"):
        service.mark_gold_from_ranking(db, scene.project, ranking.id)


def test_archive_keeps_labels_removes_free_slots_and_restore_brings_them_back(db: Session, scene: Scene) -> None:
    counts = service.dependents(db, scene.aurora)
    assert counts.lineage and counts.rankings == 1 and counts.completions == 9 and counts.skipped == 1
    with pytest.raises(Conflict, match="archive it instead"):
        service.delete_prompt(db, scene.project, scene.aurora)
    service.archive_prompt(db, scene.project, scene.aurora)
    db.commit()
    assert service.is_archived(scene.aurora)
    slots = dict(db.execute(select(Slot.status, func.count()).where(Slot.prompt_id == scene.aurora.id)
                            .group_by(Slot.status)).all())
    assert slots == {"done": 1}  # the open slot is gone: nobody is handed the prompt again
    assert service.dependents(db, scene.aurora).rankings == 1
    assert _ids(db, scene, status="archived") == {scene.aurora.id}
    assert scene.aurora.id not in _ids(db, scene, status="pending")
    with pytest.raises(Conflict, match="already archived"):
        service.archive_prompt(db, scene.project, scene.aurora)
    service.restore_prompt(db, scene.project, scene.aurora)
    db.commit()
    assert not service.is_archived(scene.aurora)
    assert db.scalar(select(func.count()).select_from(Slot).where(Slot.prompt_id == scene.aurora.id)) == 2


def test_delete_a_prompt_nobody_ranked_takes_its_dependents(db: Session, scene: Scene) -> None:
    counts = service.dependents(db, scene.plain)
    assert not counts.lineage and counts.completions == 4 and counts.slots_open == 2
    service.delete_prompt(db, scene.project, scene.plain)
    db.commit()
    assert db.get(Prompt, scene.plain.id) is None
    assert db.scalar(select(func.count()).select_from(Completion).where(Completion.prompt_id == scene.plain.id)) == 0
    assert db.scalar(select(func.count()).select_from(Slot).where(Slot.prompt_id == scene.plain.id)) == 0


def test_skipped_tasks_page_and_csv(db: Session, scene: Scene) -> None:
    page = service.skipped(db, scene.project, 1)
    assert [(s.prompt_id, s.annotator, s.reason) for s in page.rows] == [(scene.aurora.id, "Bob", SKIP_REASON)]
    rows = list(csv.reader(io.StringIO(service.skipped_csv(db, scene.project))))
    assert rows[0] == ["assignment_id", "prompt_id", "annotator", "round", "skipped_at", "reason", "prompt_text"]
    assert rows[1][1] == str(scene.aurora.id) and rows[1][5] == "'" + SKIP_REASON  # no formula runs
