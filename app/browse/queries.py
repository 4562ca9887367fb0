"""Every SELECT and DELETE of the data browser: filtered, bounded lists of prompts, rankings and skipped
tasks, one prompt or ranking with what it needs, and the counts of a prompt's dependents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import CompoundSelect, Select, String, and_, cast, delete, exists, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.browse.schemas import COUNT_CAP, DataFilter
from app.models import (
    Assignment,
    Comparison,
    Completion,
    Demonstration,
    ModelVersion,
    ModelVersionComparison,
    ModelVersionDemonstration,
    ModelVersionPrompt,
    Prompt,
    Ranking,
    RankingVersion,
    Slot,
    TestSetPrompt,
    User,
    utcnow,
)

ESCAPE = "\\"
ARCHIVED_KEY = "archived_at"
"""Key in `prompts.metadata` that marks a prompt archived (the table has no column for it)."""


def like_pattern(text: str) -> str:
    """`text` as a LIKE pattern that matches it anywhere, with its own % and _ taken literally."""
    escaped = text.replace(ESCAPE, ESCAPE * 2).replace("%", ESCAPE + "%").replace("_", ESCAPE + "_")
    return f"%{escaped}%"


def _contains(column: Any, text: str) -> ColumnElement[bool]:
    # ILIKE on Postgres, lower() LIKE lower() on SQLite: case-insensitive on both.
    matched: ColumnElement[bool] = column.ilike(like_pattern(text), escape=ESCAPE)
    return matched


def _archived() -> ColumnElement[bool]:
    marked: ColumnElement[bool] = Prompt.meta[ARCHIVED_KEY].as_string().is_not(None)
    return marked


def _flag_matches(flag: str) -> ColumnElement[bool]:
    """A ranking with the named flag on some answer (`*`: any flag). Flags are {completion id: [names]};
    its JSON text holds `"name"` for a ticked flag and `["` only where some list is not empty."""
    text = cast(Ranking.flags, String)
    if flag == "*":
        return text.like('%["%')
    return text.like(like_pattern(f'"{flag}"'), escape=ESCAPE)


def _not_done_slot(prompt_id: Any) -> ColumnElement[bool]:
    return exists().where(Slot.prompt_id == prompt_id, Slot.status != "done")


def _has_ranking(prompt_id: Any) -> ColumnElement[bool]:
    return exists().where(Ranking.prompt_id == prompt_id)


def _prompt_conditions(project_id: int, f: DataFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [Prompt.project_id == project_id]
    if f.prompt is not None:
        where.append(Prompt.id == f.prompt)
    if f.q.strip():
        words = f.q.strip()
        in_completion = exists().where(Completion.prompt_id == Prompt.id, _contains(Completion.text, words))
        where.append(or_(_contains(Prompt.text, words), _contains(cast(Prompt.messages, String), words),
                         _contains(Prompt.external_id, words), in_completion))
    if f.status == "archived":
        where.append(_archived())
    elif f.status:
        where.append(~_archived())
    if f.status == "pending":
        where.append(_not_done_slot(Prompt.id))
    elif f.status == "complete":
        where.append(and_(exists().where(Slot.prompt_id == Prompt.id), ~_not_done_slot(Prompt.id)))
    elif f.status == "unranked":
        where.append(~_has_ranking(Prompt.id))
    ranking_where: list[ColumnElement[bool]] = []
    if f.annotator is not None:
        ranking_where.append(Ranking.annotator_id == f.annotator)
    if f.flag:
        ranking_where.append(_flag_matches(f.flag))
    if ranking_where:
        where.append(exists().where(Ranking.prompt_id == Prompt.id, *ranking_where))
    completion_where: list[ColumnElement[bool]] = []
    if f.model_version is not None:
        completion_where.append(Completion.model_version_id == f.model_version)
    if f.round is not None:
        completion_where.append(Completion.round == f.round)
    if completion_where:
        where.append(exists().where(Completion.prompt_id == Prompt.id, *completion_where))
    if f.gold:
        where.append(Prompt.is_gold.is_(f.gold == "yes"))
    if f.trained_by is not None:
        where.append(or_(_trained(f.trained_by, Comparison.prompt_id == Prompt.id),
                         exists().where(ModelVersionPrompt.prompt_id == Prompt.id,
                                        ModelVersionPrompt.model_version_id == f.trained_by)))
    return where


def _trained(version_id: int, *where: ColumnElement[bool]) -> ColumnElement[bool]:
    """Some comparison matching `where` trained model version `version_id`."""
    return exists().where(ModelVersionComparison.comparison_id == Comparison.id,
                          ModelVersionComparison.model_version_id == version_id, *where)


def _capped_count(db: Session, stmt: Select[Any]) -> int:
    """How many rows `stmt` returns, counting no further than COUNT_CAP."""
    inner = stmt.limit(COUNT_CAP).subquery()
    return int(db.scalar(select(func.count()).select_from(inner)) or 0)


def prompt_page(db: Session, project_id: int, f: DataFilter, offset: int, limit: int
                ) -> tuple[list[Prompt], int]:
    """One page of the project's prompts matching `f`, newest first, and the (capped) number that match."""
    where = _prompt_conditions(project_id, f)
    rows = list(db.scalars(select(Prompt).where(*where).order_by(Prompt.id.desc()).offset(offset).limit(limit)))
    return rows, _capped_count(db, select(Prompt.id).where(*where))


def prompt_counts(db: Session, prompt_ids: Sequence[int]) -> dict[int, tuple[int, int, int]]:
    """(completions, rankings, slots not done) per prompt id."""
    if not prompt_ids:
        return {}
    ids = list(prompt_ids)

    def per_prompt(column: Any, *where: ColumnElement[bool]) -> dict[int, int]:
        stmt = select(column, func.count()).where(column.in_(ids), *where).group_by(column)
        return {int(k): int(n) for k, n in db.execute(stmt)}

    comps = per_prompt(Completion.prompt_id)
    ranks = per_prompt(Ranking.prompt_id)
    pending = per_prompt(Slot.prompt_id, Slot.status != "done")
    return {i: (comps.get(i, 0), ranks.get(i, 0), pending.get(i, 0)) for i in ids}


def _ranking_conditions(project_id: int, f: DataFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [Ranking.project_id == project_id]
    if f.prompt is not None:
        where.append(Ranking.prompt_id == f.prompt)
    if f.annotator is not None:
        where.append(Ranking.annotator_id == f.annotator)
    if f.flag:
        where.append(_flag_matches(f.flag))
    if f.gold:
        where.append(Prompt.is_gold.is_(f.gold == "yes"))
    if f.round is not None:
        where.append(func.coalesce(Assignment.round, 0) == f.round)
    if f.q.strip():
        words = f.q.strip()
        where.append(or_(_contains(Prompt.text, words), _contains(Ranking.rationale, words)))
    if f.model_version is not None:
        where.append(exists().where(Completion.prompt_id == Ranking.prompt_id,
                                    Completion.model_version_id == f.model_version))
    if f.trained_by is not None:
        where.append(_trained(f.trained_by, Comparison.ranking_id == Ranking.id))
    if f.status == "archived":
        where.append(_archived())
    return where


def _ranking_select(project_id: int, f: DataFilter) -> Select[Any]:
    return (select(Ranking, Prompt.text, Prompt.messages, Prompt.is_gold, User.display_name,
                   func.coalesce(Assignment.round, 0))
            .join(Prompt, Prompt.id == Ranking.prompt_id)
            .outerjoin(User, User.id == Ranking.annotator_id)
            .outerjoin(Assignment, Assignment.id == Ranking.assignment_id)
            .where(*_ranking_conditions(project_id, f)))


def ranking_page(db: Session, project_id: int, f: DataFilter, offset: int, limit: int
                 ) -> tuple[list[tuple[Any, ...]], int]:
    """One page of (ranking, prompt text, messages, prompt is gold, annotator name, round), newest first."""
    stmt = _ranking_select(project_id, f)
    rows = [tuple(r) for r in db.execute(stmt.order_by(Ranking.id.desc()).offset(offset).limit(limit))]
    return rows, _capped_count(db, stmt.with_only_columns(Ranking.id))


def rankings_of_prompt(db: Session, prompt_id: int, limit: int) -> list[tuple[Ranking, str | None, int]]:
    """(ranking, annotator name, round) for the first `limit` rankings of a prompt, in order."""
    stmt = (select(Ranking, User.display_name, func.coalesce(Assignment.round, 0))
            .outerjoin(User, User.id == Ranking.annotator_id)
            .outerjoin(Assignment, Assignment.id == Ranking.assignment_id)
            .where(Ranking.prompt_id == prompt_id).order_by(Ranking.id).limit(limit))
    return [(r, name, int(rnd)) for r, name, rnd in db.execute(stmt)]


def prompt(db: Session, project_id: int, prompt_id: int) -> Prompt | None:
    return db.scalar(select(Prompt).where(Prompt.id == prompt_id, Prompt.project_id == project_id))


def completions_of(db: Session, prompt_id: int) -> list[tuple[Completion, str | None]]:
    """A prompt's completions by round and position, each with its model version's name."""
    stmt = (select(Completion, ModelVersion.name)
            .outerjoin(ModelVersion, ModelVersion.id == Completion.model_version_id)
            .where(Completion.prompt_id == prompt_id)
            .order_by(Completion.round, Completion.position, Completion.id))
    return [(c, name) for c, name in db.execute(stmt)]


def ranking(db: Session, project_id: int, ranking_id: int) -> tuple[Ranking, str | None, Assignment | None] | None:
    """A ranking of the project with its annotator's name and its assignment (None for imported ones)."""
    stmt = (select(Ranking, User.display_name, Assignment)
            .outerjoin(User, User.id == Ranking.annotator_id)
            .outerjoin(Assignment, Assignment.id == Ranking.assignment_id)
            .where(Ranking.id == ranking_id, Ranking.project_id == project_id))
    row = db.execute(stmt).first()
    return (row[0], row[1], row[2]) if row else None


def completions_by_id(db: Session, completion_ids: Sequence[int]) -> dict[int, Completion]:
    if not completion_ids:
        return {}
    return {c.id: c for c in db.scalars(select(Completion).where(Completion.id.in_(list(completion_ids))))}


def skipped_page(db: Session, project_id: int, offset: int, limit: int | None
                 ) -> tuple[list[tuple[Assignment, str | None, list[Any] | None, str | None]], int]:
    """Skipped assignments, newest first: (assignment, prompt text, prompt messages, annotator name)."""
    stmt = (select(Assignment, Prompt.text, Prompt.messages, User.display_name)
            .join(Prompt, Prompt.id == Assignment.prompt_id)
            .outerjoin(User, User.id == Assignment.annotator_id)
            .where(Assignment.project_id == project_id, Assignment.status == "skipped"))
    ordered = stmt.order_by(Assignment.id.desc()).offset(offset)
    rows = [(a, t, m, n) for a, t, m, n in db.execute(ordered.limit(limit) if limit is not None else ordered)]
    return rows, _capped_count(db, stmt.with_only_columns(Assignment.id))


def annotators(db: Session, project_id: int) -> list[tuple[int, str]]:
    """(id, name) of everyone with a ranking in the project, for the annotator filter."""
    ids = select(Ranking.annotator_id).where(Ranking.project_id == project_id).distinct().subquery()
    stmt = select(User.id, User.display_name).where(User.id.in_(select(ids.c.annotator_id))).order_by(User.display_name)
    return [(int(i), n) for i, n in db.execute(stmt)]


def model_versions(db: Session, project_id: int) -> list[tuple[int, str]]:
    """(id, name) of the project's model versions, for the model version filter."""
    stmt = select(ModelVersion.id, ModelVersion.name).where(ModelVersion.project_id == project_id)
    return [(int(i), n) for i, n in db.execute(stmt.order_by(ModelVersion.id))]


def dependents(db: Session, prompt_id: int) -> dict[str, int]:
    """Counts of every row that belongs to a prompt, by kind."""

    def count(stmt: Select[Any] | CompoundSelect[Any]) -> int:
        return int(db.scalar(select(func.count()).select_from(stmt.subquery())) or 0)

    slots = {s: int(n) for s, n in db.execute(
        select(Slot.status, func.count()).where(Slot.prompt_id == prompt_id).group_by(Slot.status))}
    comparison_ids = select(Comparison.id).where(Comparison.prompt_id == prompt_id)
    demonstration_ids = select(Demonstration.id).where(Demonstration.prompt_id == prompt_id)
    trained = (select(ModelVersionComparison.model_version_id)
               .where(ModelVersionComparison.comparison_id.in_(comparison_ids))
               .union(select(ModelVersionPrompt.model_version_id).where(ModelVersionPrompt.prompt_id == prompt_id),
                      select(ModelVersionDemonstration.model_version_id)
                      .where(ModelVersionDemonstration.demonstration_id.in_(demonstration_ids))))
    return {
        "completions": count(select(Completion.id).where(Completion.prompt_id == prompt_id)),
        "slots_open": slots.get("open", 0),
        "slots_leased": slots.get("leased", 0),
        "slots_done": slots.get("done", 0),
        "assignments": count(select(Assignment.id).where(Assignment.prompt_id == prompt_id)),
        "skipped": count(select(Assignment.id).where(Assignment.prompt_id == prompt_id,
                                                     Assignment.status == "skipped")),
        "rankings": count(select(Ranking.id).where(Ranking.prompt_id == prompt_id)),
        "ranking_versions": count(select(RankingVersion.id).join(Ranking, Ranking.id == RankingVersion.ranking_id)
                                  .where(Ranking.prompt_id == prompt_id)),
        "comparisons": count(comparison_ids),
        "demonstrations": count(demonstration_ids),
        "trained_versions": count(trained),
        "test_sets": count(select(TestSetPrompt.id).where(TestSetPrompt.prompt_id == prompt_id)),
    }


def latest_round(db: Session, prompt_id: int) -> int:
    """The prompt's newest sampling round (0 when it has only uploaded completions)."""
    return int(db.scalar(select(func.max(Completion.round)).where(Completion.prompt_id == prompt_id)) or 0)


def delete_prompt(db: Session, prompt_id: int) -> None:
    """Delete a prompt; the database cascades to its completions, slots, assignments and labels."""
    db.execute(delete(Prompt).where(Prompt.id == prompt_id))
    db.flush()


def release_free_slots(db: Session, prompt_id: int) -> int:
    """Delete the prompt's slots nobody holds (open, or leased with the lease run out); returns how many.
    Slots held now or done stay, like the rankings they carry."""
    free = or_(Slot.status == "open", and_(Slot.status == "leased", Slot.lease_expires_at < utcnow()))
    result = db.execute(delete(Slot).where(Slot.prompt_id == prompt_id, free))
    db.flush()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
