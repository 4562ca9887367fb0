"""The export's reads: one consistent read-only snapshot, and Core selects streamed with a server-side cursor.

No ORM objects are loaded: rows come back as tuples and are shaped by `app.exports.rows`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Connection,
    Engine,
    Select,
    String,
    and_,
    any_,
    bindparam,
    cast,
    exists,
    or_,
    select,
)
from sqlalchemy.orm import aliased

from app.exports.schemas import ExportFilters
from app.models import (
    Comparison,
    Completion,
    Demonstration,
    ModelVersion,
    ModelVersionComparison,
    ModelVersionDemonstration,
    ModelVersionPrompt,
    Prompt,
    Ranking,
)

YIELD_PER = 5000
AnySelect = Select[*tuple[Any, ...]]


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection inside one read-only snapshot transaction.

    Postgres: REPEATABLE READ READ ONLY, so every query of the export sees the same data.
    SQLite: a DEFERRED transaction (a WAL read snapshot from the first read) that blocks no writer.
    """
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        else:
            conn.execution_options(sqlite_begin="DEFERRED")
        with conn.begin():
            yield conn


def stream(conn: Connection, statement: AnySelect) -> Iterator[Any]:
    """The rows of `statement`, fetched YIELD_PER at a time from a server-side cursor."""
    result = conn.execution_options(yield_per=YIELD_PER).execute(statement)
    for partition in result.partitions():
        yield from partition


def has_conversational_prompts(conn: Connection, project_id: int) -> bool:
    """Whether any prompt of the project has chat messages or a system prompt (then all are exported as chat)."""
    # A JSON column may hold the literal `null` (an ORM None) as well as SQL NULL: neither is a chat.
    has_messages = and_(Prompt.messages.is_not(None), cast(Prompt.messages, String) != "null")
    query = select(exists().where(Prompt.project_id == project_id, or_(has_messages, Prompt.system.is_not(None))))
    return bool(conn.execute(query).scalar())


_PROMPT_COLUMNS = (Prompt.text, cast(Prompt.messages, String), Prompt.system)


def pairs_query(project_id: int, filters: ExportFilters) -> AnySelect:
    """Non-tied comparisons with the prompt and both completion texts, in id order.

    Columns: id, prompt_id, ranking_id, annotator_id, winner_rank, loser_rank, rank_gap, source, weight,
    created_at, prompt text, prompt messages (JSON text), system, chosen text, rejected text, chosen and
    rejected completion ids, their model version ids and names (None when imported without a version), and
    the pairwise preference strength (None for pairs from rankings).
    """
    winner, loser = aliased(Completion), aliased(Completion)
    winner_version, loser_version = aliased(ModelVersion), aliased(ModelVersion)
    c = Comparison
    query: AnySelect = (
        select(
            c.id, c.prompt_id, c.ranking_id, c.annotator_id, c.winner_rank, c.loser_rank, c.rank_gap,
            c.source, c.weight, c.created_at, *_PROMPT_COLUMNS, winner.text, loser.text,
            c.winner_id, c.loser_id, winner.model_version_id, loser.model_version_id,
            winner_version.name, loser_version.name, c.strength, Ranking.source, Ranking.client_info,
        )
        .join(Prompt, Prompt.id == c.prompt_id)
        .outerjoin(Ranking, Ranking.id == c.ranking_id)
        .join(winner, winner.id == c.winner_id)
        .join(loser, loser.id == c.loser_id)
        .outerjoin(winner_version, winner_version.id == winner.model_version_id)
        .outerjoin(loser_version, loser_version.id == loser.model_version_id)
        .where(c.project_id == project_id, c.is_tie.is_(False))
        .order_by(c.id)
    )
    if filters.since is not None:
        query = query.where(c.created_at >= filters.since)
    if filters.annotator_id is not None:
        query = query.where(c.annotator_id == filters.annotator_id)
    if filters.model_version_id is not None:
        query = query.where(
            and_(winner.model_version_id == filters.model_version_id, loser.model_version_id == filters.model_version_id)
        )
    if filters.humans_only:
        query = query.where(or_(Ranking.source.is_(None), Ranking.source != "ai"))
    if filters.trained_version_id is not None:
        query = query.where(exists().where(ModelVersionComparison.model_version_id == filters.trained_version_id,
                                           ModelVersionComparison.comparison_id == c.id))
    return query


def rankings_query(project_id: int, filters: ExportFilters) -> AnySelect:
    """Rankings with their prompt, in id order. Completion texts are fetched per batch (`completions_by_id`).

    Columns: id, prompt_id, annotator_id, ranks, shown_order, flags, likert (their stored JSON text), rationale,
    not_rankable,
    wall_seconds, active_seconds, weight, source, created_at, demonstration, prompt text, messages, system,
    client_info.
    """
    r = Ranking
    query = (
        select(
            r.id, r.prompt_id, r.annotator_id, r.ranks, r.shown_order, cast(r.flags, String).label("flags"),
            cast(r.likert, String).label("likert"), r.rationale,
            r.not_rankable, r.wall_seconds, r.active_seconds, r.weight, r.source, r.created_at, r.demonstration,
            *_PROMPT_COLUMNS, r.client_info,
        )
        .join(Prompt, Prompt.id == r.prompt_id)
        .where(r.project_id == project_id)
        .order_by(r.id)
    )
    if filters.since is not None:
        query = query.where(r.created_at >= filters.since)
    if filters.annotator_id is not None:
        query = query.where(r.annotator_id == filters.annotator_id)
    if filters.humans_only:
        query = query.where(r.source != "ai")
    if filters.trained_version_id is not None:  # a ranking trained a version when one of its comparisons did
        lineage = (
            select(ModelVersionComparison.comparison_id)
            .join(Comparison, Comparison.id == ModelVersionComparison.comparison_id)
            .where(ModelVersionComparison.model_version_id == filters.trained_version_id, Comparison.ranking_id == r.id)
        )
        query = query.where(lineage.exists())
    return query


def prompts_query(project_id: int, filters: ExportFilters) -> AnySelect:
    """Prompts of the project in id order. Columns: id, text, messages (JSON text), system."""
    query: AnySelect = select(Prompt.id, *_PROMPT_COLUMNS).where(Prompt.project_id == project_id).order_by(Prompt.id)
    if filters.since is not None:
        query = query.where(Prompt.created_at >= filters.since)
    if filters.trained_version_id is not None:
        query = query.where(exists().where(ModelVersionPrompt.model_version_id == filters.trained_version_id,
                                           ModelVersionPrompt.prompt_id == Prompt.id))
    return query


def demonstrations_query(project_id: int, filters: ExportFilters) -> AnySelect:
    """Demonstrations (written beside a ranking or imported) with their prompt, in id order.

    Columns: id, prompt_id, text, source, ranking_id, annotator_id, created_at, prompt text, messages, system,
    and the source and client_info of the ranking it was written beside (None for imported ones).
    """
    d = Demonstration
    query: AnySelect = (
        select(d.id, d.prompt_id, d.text, d.source, d.ranking_id, d.annotator_id, d.created_at, *_PROMPT_COLUMNS,
               Ranking.source, Ranking.client_info)
        .join(Prompt, Prompt.id == d.prompt_id)
        .outerjoin(Ranking, Ranking.id == d.ranking_id)
        .where(Prompt.project_id == project_id)
        .order_by(d.id)
    )
    if filters.since is not None:
        query = query.where(d.created_at >= filters.since)
    if filters.annotator_id is not None:
        query = query.where(d.annotator_id == filters.annotator_id)
    if filters.humans_only:
        query = query.where(or_(Ranking.source.is_(None), Ranking.source != "ai"))
    if filters.trained_version_id is not None:
        query = query.where(exists().where(ModelVersionDemonstration.model_version_id == filters.trained_version_id,
                                           ModelVersionDemonstration.demonstration_id == d.id))
    return query


CompletionInfo = tuple[str, int | None, str | None]


def completions_by_id(conn: Connection, ids: Sequence[int]) -> dict[int, CompletionInfo]:
    """Text, sampling model version id and its name of each completion id (in chunks, in the same snapshot)."""
    found: dict[int, CompletionInfo] = {}
    unique = list(dict.fromkeys(ids))
    postgres = conn.dialect.name == "postgresql"
    # Postgres takes the ids as one array parameter: an IN list of a thousand placeholders costs more to
    # build and parse than the lookup itself. SQLite has no arrays (and caps a statement's parameters).
    size = 5000 if postgres else 1000
    for start in range(0, len(unique), size):
        chunk = unique[start : start + size]
        match = Completion.id == any_(bindparam("ids", chunk, type_=ARRAY(BigInteger))) if postgres \
            else Completion.id.in_(chunk)
        query = (
            select(Completion.id, Completion.text, Completion.model_version_id, ModelVersion.name)
            .outerjoin(ModelVersion, ModelVersion.id == Completion.model_version_id)
            .where(match)
        )
        for cid, text, version, name in conn.execute(query):
            found[cid] = (text, version, name)
    return found


def model_version_in_project(conn: Connection, project_id: int, version_id: int) -> bool:
    query = select(ModelVersion.id).where(ModelVersion.id == version_id, ModelVersion.project_id == project_id)
    return conn.execute(query).first() is not None


def versions_named(conn: Connection, project_id: int, ref: str) -> list[tuple[int, str]]:
    """(id, name) of the project's model versions whose id (all digits) or name is `ref`."""
    match = ModelVersion.id == int(ref) if ref.isdigit() else ModelVersion.name == ref
    query = select(ModelVersion.id, ModelVersion.name).where(ModelVersion.project_id == project_id, match)
    return [(int(i), str(n)) for i, n in conn.execute(query.order_by(ModelVersion.id))]


def version_name(conn: Connection, version_id: int) -> str | None:
    return conn.execute(select(ModelVersion.name).where(ModelVersion.id == version_id)).scalar()


def lineages_of(conn: Connection, version_id: int) -> set[str]:
    """Which lineage tables ("comparisons", "demonstrations", "prompts") hold rows for this version."""
    columns = {"comparisons": ModelVersionComparison.model_version_id,
               "demonstrations": ModelVersionDemonstration.model_version_id,
               "prompts": ModelVersionPrompt.model_version_id}
    return {name for name, column in columns.items()
            if conn.execute(select(exists().where(column == version_id))).scalar()}
