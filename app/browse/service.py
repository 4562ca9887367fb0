"""The data browser's logic: pages of prompts, rankings and skipped tasks; a ranking as its annotator saw it;
archiving or deleting a prompt with its dependents; marking a prompt gold from one of its rankings.
Never commits."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from app.browse import queries
from app.browse.schemas import (
    PAGE_SIZE,
    DataFilter,
    Dependents,
    Page,
    PromptRow,
    RankingRow,
    RankingView,
    ShownItem,
    SkipRow,
)
from app.errors import Conflict, Invalid, NotFound
from app.labeling.slots import ensure_slots
from app.models import Completion, Project, Prompt, Ranking, utcnow
from app.quality import gold_admin

LETTERS = "ABCDEFGHIJKLMNOP"
PROMPT_RANKINGS_MAX = 500
"""Rankings listed on one prompt's page (a gold prompt may collect many; the rankings list pages the rest)."""
SKIPPED_CSV_MAX = 100_000
"""Rows in one skipped-tasks CSV download (newest first)."""
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def prompt_text(text: str | None, messages: Sequence[Mapping[str, Any]] | None) -> str:
    """A prompt as one text: its text, or its chat messages as "role: content" lines."""
    if text:
        return text
    lines = [f"{m.get('role', '?')}: {m.get('content', '')}" for m in messages or [] if isinstance(m, Mapping)]
    return "\n".join(lines)


def is_archived(prompt: Prompt) -> bool:
    return bool((prompt.meta or {}).get(queries.ARCHIVED_KEY))


def list_prompts(db: Session, project: Project, f: DataFilter) -> Page[PromptRow]:
    """The page `f.page` of the project's prompts that match `f`."""
    prompts, total = queries.prompt_page(db, project.id, f, (f.page - 1) * PAGE_SIZE, PAGE_SIZE)
    counts = queries.prompt_counts(db, [p.id for p in prompts])
    rows = [PromptRow(p, *counts.get(p.id, (0, 0, 0)), archived=is_archived(p)) for p in prompts]
    return Page(rows, total, f.page)


def _flagged(flags: Mapping[str, Any]) -> int:
    return sum(1 for v in flags.values() if v)


def list_rankings(db: Session, project: Project, f: DataFilter) -> Page[RankingRow]:
    """The page `f.page` of the project's rankings that match `f` (annotator, flag, gold, round, words)."""
    rows, total = queries.ranking_page(db, project.id, f, (f.page - 1) * PAGE_SIZE, PAGE_SIZE)
    out = [RankingRow(id=r.id, prompt_id=r.prompt_id, prompt_text=prompt_text(text, messages),
                      annotator=name or _source_name(r.source), source=r.source, shown=len(r.shown_order or []),
                      flagged=_flagged(r.flags or {}), has_rationale=bool(r.rationale), gold=bool(gold),
                      round=int(rnd), created_at=r.created_at)
           for r, text, messages, gold, name, rnd in rows]
    return Page(out, total, f.page)


def _source_name(source: str) -> str:
    return {"imported": "(imported)", "ai": "(AI annotator)"}.get(source, "(deleted user)")


def filter_choices(db: Session, project: Project) -> dict[str, list[tuple[int, str]]]:
    """The annotators and model versions the filter menus offer."""
    return {"annotators": queries.annotators(db, project.id), "model_versions": queries.model_versions(db, project.id)}


def get_prompt(db: Session, project: Project, prompt_id: int) -> Prompt:
    found = queries.prompt(db, project.id, prompt_id)
    if found is None:
        raise NotFound(f"prompt {prompt_id} not found in project {project.id}")
    return found


def prompt_completions(db: Session, prompt: Prompt) -> list[tuple[Completion, str | None]]:
    """The prompt's completions (round, position order) with their model version names."""
    return queries.completions_of(db, prompt.id)


def prompt_rankings(db: Session, prompt: Prompt) -> list[dict[str, Any]]:
    """The prompt's rankings in short: id, annotator, round, order in letters of their display, flags, time."""
    out = []
    for r, name, rnd in queries.rankings_of_prompt(db, prompt.id, PROMPT_RANKINGS_MAX):
        letters = {cid: LETTERS[i] for i, cid in enumerate(r.shown_order or []) if i < len(LETTERS)}
        out.append({"ranking": r, "annotator": name or _source_name(r.source), "round": rnd,
                    "order": order_in_letters(r.ranks or {}, letters), "flagged": _flagged(r.flags or {})})
    return out


def order_in_letters(ranks: Mapping[str, int], letters: Mapping[int, str]) -> str:
    """Ranks as letters, best first, ties joined by "=": "C > A = B > D" (unranked answers left out)."""
    groups: dict[int, list[str]] = {}
    for cid, letter in letters.items():
        rank = ranks.get(str(cid))
        if rank is not None:
            groups.setdefault(int(rank), []).append(letter)
    return " > ".join(" = ".join(sorted(groups[r])) for r in sorted(groups))


def ranking_view(db: Session, project: Project, ranking_id: int) -> RankingView:
    """A ranking as its annotator saw it: answers in display order with their letters, texts, ranks, ties,
    flags and quality scores, and the rationale and time taken."""
    found = queries.ranking(db, project.id, ranking_id)
    if found is None:
        raise NotFound(f"ranking {ranking_id} not found in project {project.id}")
    r, name, assignment = found
    prompt = get_prompt(db, project, r.prompt_id)
    shown = [int(c) for c in (r.shown_order or [])] or sorted(int(c) for c in r.ranks)
    completions = queries.completions_by_id(db, shown)
    ranks = {int(k): int(v) for k, v in (r.ranks or {}).items()}
    rank_counts: dict[int, int] = {}
    for v in ranks.values():
        rank_counts[v] = rank_counts.get(v, 0) + 1
    items = []
    for i, cid in enumerate(shown):
        if cid not in completions or i >= len(LETTERS):
            continue
        rank = ranks.get(cid)
        likert = (r.likert or {}).get(str(cid))
        items.append(ShownItem(letter=LETTERS[i], completion=completions[cid], rank=rank,
                               tied=rank is not None and rank_counts[rank] > 1,
                               flags=list((r.flags or {}).get(str(cid)) or []),
                               likert=int(likert) if isinstance(likert, int | float) else None))
    letters = {item.completion.id: item.letter for item in items}
    return RankingView(
        id=r.id, prompt=prompt, annotator=name or _source_name(r.source), source=r.source, items=items,
        order=order_in_letters(r.ranks or {}, letters), rationale=r.rationale or "", not_rankable=r.not_rankable,
        demonstration=r.demonstration, strength=r.strength, wall_seconds=r.wall_seconds,
        active_seconds=r.active_seconds, version=r.version, created_at=r.created_at, revised_at=r.revised_at,
        gold_assignment=bool(assignment and assignment.is_gold), round=assignment.round if assignment else 0,
    )


def gold_spec_from_ranks(ranks: Mapping[str, int]) -> list[dict[str, int]]:
    """A gold spec that says what a ranking says: every answer of one rank above every answer of the next
    rank down. Ties say nothing, so tied answers get no constraint between them."""
    groups: dict[int, list[int]] = {}
    for cid, rank in ranks.items():
        groups.setdefault(int(rank), []).append(int(cid))
    ordered = [sorted(groups[r]) for r in sorted(groups)]
    return [{"better": a, "worse": b} for upper, lower in zip(ordered, ordered[1:], strict=False)
            for a in upper for b in lower]


def mark_gold_from_ranking(db: Session, project: Project, ranking_id: int) -> Prompt:
    """Make the ranking's prompt a gold item whose spec is this ranking's order (replacing an earlier spec)."""
    found = queries.ranking(db, project.id, ranking_id)
    if found is None:
        raise NotFound(f"ranking {ranking_id} not found in project {project.id}")
    r: Ranking = found[0]
    if r.not_rankable:
        raise Invalid(f"ranking {ranking_id} says its answers could not be ranked; it cannot be a gold spec")
    spec = gold_spec_from_ranks(r.ranks or {})
    if not spec:
        raise Invalid(f"ranking {ranking_id} ties every answer; a gold spec needs at least one answer above another")
    prompt = get_prompt(db, project, r.prompt_id)
    if is_archived(prompt):
        raise Conflict(f"prompt {prompt.id} is archived; restore it before making it a gold item")
    try:
        return gold_admin.mark_gold(db, prompt, spec)
    except gold_admin.GoldError as exc:
        raise Invalid(str(exc)) from exc


def dependents(db: Session, prompt: Prompt) -> Dependents:
    """Everything that belongs to the prompt, counted (what a delete would remove)."""
    return Dependents(**queries.dependents(db, prompt.id))


def archive_prompt(db: Session, project: Project, prompt: Prompt) -> int:
    """Archive the prompt: it keeps its completions, rankings and lineage, leaves the browser's default
    views, and its free slots are removed so nobody is handed it again. Returns the slots removed.

    Gold prompts are refused (gold injection would still hand them out): make them regular first."""
    if is_archived(prompt):
        raise Conflict(f"prompt {prompt.id} is already archived")
    if prompt.is_gold:
        raise Conflict(f"prompt {prompt.id} is a gold item; make it regular on the gold page before archiving it")
    prompt.meta = {**(prompt.meta or {}), queries.ARCHIVED_KEY: utcnow().isoformat()}
    db.flush()
    return queries.release_free_slots(db, prompt.id)


def restore_prompt(db: Session, project: Project, prompt: Prompt) -> None:
    """Undo an archive: the prompt gets back the missing slots of its newest round."""
    if not is_archived(prompt):
        raise Conflict(f"prompt {prompt.id} is not archived")
    prompt.meta = {k: v for k, v in (prompt.meta or {}).items() if k != queries.ARCHIVED_KEY}
    db.flush()
    ensure_slots(db, project, [prompt.id], round_=queries.latest_round(db, prompt.id))


def delete_prompt(db: Session, project: Project, prompt: Prompt) -> Dependents:
    """Delete the prompt and everything it has. Refused (409) when that would destroy labels or training
    lineage (rankings, comparisons, demonstrations, trained model versions, test sets): archive it instead."""
    counts = dependents(db, prompt)
    if counts.lineage:
        raise Conflict(f"prompt {prompt.id} has rankings or training lineage ({counts.rankings} ranking(s), "
                       f"{counts.trained_versions} model version(s) trained on it); archive it instead of deleting")
    queries.delete_prompt(db, prompt.id)
    return counts


def skipped(db: Session, project: Project, page: int) -> Page[SkipRow]:
    """The page `page` of the project's skipped tasks, newest first, with their reasons."""
    rows, total = queries.skipped_page(db, project.id, (page - 1) * PAGE_SIZE, PAGE_SIZE)
    return Page([_skip_row(*row) for row in rows], total, page)


def _skip_row(a: Any, text: str | None, messages: list[Any] | None, name: str | None) -> SkipRow:
    return SkipRow(assignment_id=a.id, prompt_id=a.prompt_id, prompt_text=prompt_text(text, messages),
                   annotator=name or "(deleted user)", round=a.round, reason=a.skip_reason or "",
                   skipped_at=a.finished_at)


def _cell(value: Any) -> str:
    text = "" if value is None else value.isoformat() if hasattr(value, "isoformat") else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def skipped_csv(db: Session, project: Project) -> str:
    """Every skipped task of the project (newest first, up to SKIPPED_CSV_MAX) as CSV; cells a spreadsheet
    would run as a formula get a leading apostrophe."""
    rows, _total = queries.skipped_page(db, project.id, 0, SKIPPED_CSV_MAX)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    columns = ("assignment_id", "prompt_id", "annotator", "round", "skipped_at", "reason", "prompt_text")
    writer.writerow(columns)
    for row in rows:
        s = _skip_row(*row)
        writer.writerow([_cell(v) for v in (s.assignment_id, s.prompt_id, s.annotator, s.round, s.skipped_at,
                                            s.reason, s.prompt_text)])
    return buf.getvalue()
