"""Submitting a ranking: server-side validation, the C(K,2) comparisons, and idempotency per assignment.

The assignment is the idempotency key (rankings.assignment_id is unique). The assignment row is locked
(SELECT ... FOR UPDATE) first, so concurrent identical submits queue; the first stores, the rest find the
saved ranking and get its result. The same key with different content is refused (422), original kept.
A late submit (lease expired) is accepted if the slot is still free or still this annotator's; otherwise
409 with the submitted payload echoed back (docs/labeling.md).
"""

from __future__ import annotations

import hashlib
import json
from itertools import combinations
from typing import Any

from sqlalchemy.orm import Session

from app.demonstrations import service as demonstrations
from app.labeling import queries
from app.labeling.assignment import own_assignment
from app.labeling.errors import Conflict, Invalid, PayloadMismatch, Problem
from app.labeling.schemas import RankingIn
from app.models import Assignment, Project, Ranking, User, utcnow
from app.projects.schemas import LabelingSettings
from app.projects.service import settings_of

NO_FLAGS = "__none__"  # the page's explicit "none of these apply" checkbox


def payload_hash(data: RankingIn) -> str:
    """A stable hash of what was said (ranks, flags, likert, texts); timings and client info excluded."""
    canonical = {
        "ranks": {str(k): v for k, v in sorted(data.ranks.items())},
        "flags": {str(k): sorted(set(v) - {NO_FLAGS}) for k, v in sorted(data.flags.items())},
        "likert": {str(k): v for k, v in sorted(data.likert.items())},
        "rationale": data.rationale.strip(),
        "not_rankable": data.not_rankable,
        "demonstration": (data.demonstration or "").strip(),
    }
    if data.strength is not None:  # only pairwise answers carry it; every other hash stays as it was
        canonical["strength"] = data.strength
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def _ids(ids: set[int]) -> str:
    return ", ".join(str(i) for i in sorted(ids))


def validate(data: RankingIn, shown: list[int], cfg: LabelingSettings) -> dict[int, int]:
    """Check a submission against the shown completions and the project's rules; returns the ranks to store."""
    k, shown_set = len(shown), set(shown)
    for field, keys in (("ranks", data.ranks), ("flags", data.flags), ("likert", data.likert)):
        extra = set(keys) - shown_set
        if extra:
            raise Invalid(f"{field}: completion ids {_ids(extra)} were not shown in this task")
    bad = {cid: r for cid, r in data.ranks.items() if not 1 <= r <= k}
    if bad:
        raise Invalid(f"ranks: every rank must be between 1 and {k}; got {bad}")
    problems: list[Problem] = []
    pairwise = cfg.mode == "pairwise"
    if data.strength is not None and not pairwise:
        raise Invalid("strength: preference strengths are only collected in pairwise projects")
    if data.not_rankable:
        ranks = {cid: data.ranks.get(cid, 1) for cid in shown}
    elif pairwise:
        ranks = dict(data.ranks)
        problems.extend(_pairwise_problems(data, shown))
    else:
        missing = shown_set - set(data.ranks)
        if missing:
            problems.append(Problem("ranks", "these answers have no rank", tuple(missing)))
        elif len(set(data.ranks.values())) < 2:
            problems.append(
                Problem("ranks", "at least two different ranks are needed (or mark the task not rankable)")
            )
        ranks = dict(data.ranks)
    allowed = set(cfg.flags) | {NO_FLAGS}
    for cid, flags in data.flags.items():
        unknown = set(flags) - allowed
        if unknown:
            raise Invalid(f"flags: unknown flag(s) {sorted(unknown)} on completion {cid}")
    if cfg.flags_required and not data.not_rankable and set(data.flags) != shown_set:
        missing = shown_set - set(data.flags)
        problems.append(
            Problem("flags", 'required for every answer (tick "none of these" if none apply)', tuple(missing))
        )
    if data.likert and not cfg.likert_enabled:
        raise Invalid("likert: ratings are not enabled in this project")
    bad_likert = {cid: v for cid, v in data.likert.items() if not 1 <= v <= 7}
    if bad_likert:
        raise Invalid(f"likert: ratings must be between 1 and 7; got {bad_likert}")
    if cfg.likert_enabled and cfg.likert_required and not data.not_rankable and set(data.likert) != shown_set:
        missing = shown_set - set(data.likert)
        problems.append(
            Problem("likert", "a quality rating (1–7) is required for every answer", tuple(missing))
        )
    if cfg.rationale_required and not data.rationale.strip():
        problems.append(Problem("rationale", "required in this project"))
    if (data.demonstration or "").strip() and not cfg.demonstrations:
        raise Invalid("demonstration: demonstrations are not enabled in this project")
    if problems:
        raise Invalid(problems=problems)
    return dense_ranks(ranks)


def dense_ranks(ranks: dict[int, int]) -> dict[int, int]:
    """The same order with no gaps: {1, 3, 3} for three answers is stored as {1, 2, 2} (issue 16)."""
    place = {rank: i for i, rank in enumerate(sorted(set(ranks.values())), start=1)}
    return {cid: place[rank] for cid, rank in ranks.items()}


def _pairwise_problems(data: RankingIn, shown: list[int]) -> list[Problem]:
    """A pairwise answer: both answers ranked, and a strength that agrees with them (0 exactly for a tie)."""
    if len(shown) != 2:
        raise Invalid(f"pairwise projects compare two answers; this task shows {len(shown)}")
    if data.strength is None or set(data.ranks) != set(shown):
        return [Problem("preference", "choose which answer is better, or that they are about the same")]
    tie = len(set(data.ranks.values())) == 1
    if tie != (data.strength == 0):
        raise Invalid("strength: 0 (about the same) exactly when both answers have the same rank")
    return []


def comparison_rows(ranking: Ranking, assignment: Assignment, ranks: dict[int, int]) -> list[dict[str, Any]]:
    """All C(K,2) pairs in shown order; equal ranks give a tie row (winner = the one shown first)."""
    rows: list[dict[str, Any]] = []
    for a, b in combinations(assignment.shown_completion_ids, 2):
        ra, rb = ranks[a], ranks[b]
        winner, loser = (b, a) if rb < ra else (a, b)
        rows.append(
            {
                "project_id": ranking.project_id,
                "prompt_id": ranking.prompt_id,
                "ranking_id": ranking.id,
                "winner_id": winner,
                "loser_id": loser,
                "winner_rank": min(ra, rb),
                "loser_rank": max(ra, rb),
                "rank_gap": abs(ra - rb),
                "is_tie": ra == rb,
                "annotator_id": ranking.annotator_id,
                "source": "ranking",
                "weight": 1.0,
                "created_at": ranking.created_at,
                "strength": ranking.strength,
            }
        )
    return rows


def result_of(db: Session, ranking: Ranking, comparisons: int | None = None) -> dict[str, Any]:
    """The response body of a stored ranking; identical for every retry. `comparisons`: the number just
    inserted, when the caller knows it (otherwise counted)."""
    if comparisons is None:
        comparisons = queries.comparison_count(db, ranking.id)
    return {
        "ranking_id": ranking.id,
        "assignment_id": ranking.assignment_id,
        "prompt_id": ranking.prompt_id,
        "ranks": {str(k): v for k, v in ranking.ranks.items()},
        "not_rankable": ranking.not_rankable,
        "comparisons": comparisons,
        "created_at": ranking.created_at.isoformat(),
    }


def _replay(db: Session, existing: Ranking, digest: str) -> dict[str, Any]:
    # A retry of the first submit after the annotator changed the ranking matches an earlier version.
    if existing.payload_hash != digest and digest not in queries.version_hashes(db, existing.id):
        raise PayloadMismatch(
            "this task was already submitted with a different ranking; the first one is kept"
        )
    return result_of(db, existing)


def submit(
    db: Session,
    project: Project,
    annotator: User,
    assignment_id: int,
    data: RankingIn,
    client_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Store one ranking for the annotator's assignment (or return the saved one); see the module docstring."""
    assignment = own_assignment(db, assignment_id, annotator, for_update=True)
    if assignment.project_id != project.id:
        raise Invalid(f"assignment {assignment_id} belongs to another project")
    return store(db, project, annotator, assignment, data, client_info)


def store(
    db: Session,
    project: Project,
    annotator: User,
    assignment: Assignment,
    data: RankingIn,
    client_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`submit` for an assignment the caller has already read with its row lock (and checked is theirs).

    The hot path is four statements: the slot, the ranking, its comparisons (one multi-row INSERT) and the
    assignment's status. Nothing else is read: the saved ranking is looked for only when the assignment
    says it was submitted (a ranking is stored in the same transaction that marks it so), and the
    response counts the comparisons it has just built.
    """
    digest = payload_hash(data)
    if assignment.status == "submitted":
        existing = queries.ranking_for(db, assignment.id)
        if existing is not None:
            return _replay(db, existing, digest)
    ranks = validate(data, list(assignment.shown_completion_ids), settings_of(project).labeling)
    now = utcnow()
    if assignment.status == "skipped":
        raise Conflict("you skipped this task; the ranking was not stored", data.echo())
    if assignment.status == "expired" and queries.other_live_on_prompt(db, assignment):
        raise Conflict("the lease expired and you hold a newer task on this prompt", data.echo())
    if assignment.slot_id is not None and not queries.take_slot(
        db, assignment.slot_id, annotator.id, assignment.status == "active", now
    ):
        assignment.status = "expired"
        db.flush()
        raise Conflict(
            "the lease expired and the task went to someone else; your ranking is shown below", data.echo()
        )
    # No savepoint: the row lock serialises submits of one assignment and rankings.assignment_id is unique,
    # so a second ranking cannot be stored; should that constraint ever fire, the request fails whole.
    ranking = Ranking(
        project_id=project.id,
        prompt_id=assignment.prompt_id,
        assignment_id=assignment.id,
        annotator_id=annotator.id,
        source="ai" if annotator.is_ai else "human",
        ranks={str(k): v for k, v in ranks.items()},
        shown_order=list(assignment.shown_completion_ids),
        flags={str(k): sorted(set(v) - {NO_FLAGS}) for k, v in data.flags.items()},
        likert={str(k): v for k, v in data.likert.items()},
        rationale=data.rationale.strip(),
        strength=None if data.not_rankable else data.strength,
        not_rankable=data.not_rankable,
        demonstration=(data.demonstration or "").strip() or None,
        wall_seconds=data.wall_seconds,
        active_seconds=data.active_seconds,
        client_info=client_info or {},
        payload_hash=digest,
        suggestion_shown=assignment.suggestion is not None,
        created_at=now,
    )
    queries.add(db, ranking)
    if ranking.demonstration:
        demonstrations.sync_ranking(db, ranking)
    pairs = [] if data.not_rankable else comparison_rows(ranking, assignment, ranks)
    queries.add_comparisons(db, pairs)
    assignment.status = "submitted"
    assignment.finished_at = now
    db.flush()
    return result_of(db, ranking, len(pairs))
