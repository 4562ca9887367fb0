"""Importing a file into a project: parse, validate every record, then insert everything or nothing.

The whole file is read and validated before the first INSERT, so a bad file leaves the project
untouched and the report lists every problem. A failed import is recorded as an `imports` row with
status `failed` and its errors (the only write of that unit of work); a successful one as `succeeded`
with its counts. Prompts already in the project (same external id: the given `id`, else the content
hash) are skipped, which makes re-importing a file a no-op; a skipped prompt still gets the file's
demonstrations it does not have yet (app.demonstrations).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from sqlalchemy.orm import Session

from app.demonstrations import service as demonstrations
from app.demonstrations.service import ImportedDemonstration
from app.imports import dialects, queries
from app.imports.parsers import detect_format, iter_records
from app.imports.schemas import (
    MAX_REPORTED_ISSUES,
    FileFormat,
    ImportIssue,
    ImportOptions,
    ImportOutcome,
    PromptIn,
    RankingIn,
    RawRecord,
)
from app.imports.validation import Rules, normalize
from app.labeling import slots
from app.models import ImportRecord, Project, User, utcnow

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")


class ImportFailed(ValueError):
    """Raised by `import_or_raise` when a file does not import; carries the outcome with every issue."""

    def __init__(self, outcome: ImportOutcome) -> None:
        super().__init__(f"{outcome.issue_count} problem(s) in {outcome.file_name}")
        self.outcome = outcome


def safe_file_name(name: str | None) -> str:
    """A display/storage-safe version of an uploaded file's name: no directories, odd characters or length.

    The name is only ever shown (escaped) and stored; uploaded files are parsed and never served back.
    """
    base = re.split(r"[\\/]", name or "")[-1]
    base = _UNSAFE_NAME.sub("_", base).strip(" .") or "upload"
    if len(base) > 200:
        stem, dot, ext = base.rpartition(".")
        base = (stem[: 200 - len(ext) - 1] + "." + ext) if dot and len(ext) <= 16 else base[:200]
    return base


def run_import(
    db: Session,
    project: Project,
    source: BinaryIO,
    file_name: str | None,
    options: ImportOptions,
    user: User | None = None,
) -> ImportOutcome:
    """Import `source` into `project`. Never commits: the caller's unit of work does.

    Returns the outcome; when `ok` is false nothing but the failed import record was written.
    """
    name = safe_file_name(file_name)
    sha256 = _file_digest(source)
    fmt: FileFormat = options.format or detect_format(name, source.read(4096))
    source.seek(0)
    notes = dialects.Notes()
    prompts, issues, issue_count = _validate_all(_records(source, fmt, options, notes), project)
    if not issues and not prompts:
        issues, issue_count = [ImportIssue(0, "file", "the file contains no records")], 1
    outcome = ImportOutcome(ok=not issues, file_name=name, file_format=fmt, issues=issues, issue_count=issue_count,
                            notes=notes.sentences())
    record = ImportRecord(
        project_id=project.id,
        user_id=user.id if user else None,
        file_name=name,
        file_sha256=sha256,
        file_format=fmt,
        status="running",
        counts={},
        errors=[],
    )
    if issues:
        record.status = "failed"
        record.errors = [issue.as_dict() for issue in issues[:1000]]
        record.counts = {"errors": issue_count}
        record.finished_at = utcnow()
        outcome.import_id = queries.add_import_record(db, record).id
        return outcome
    queries.add_import_record(db, record)
    outcome.import_id = record.id
    outcome.counts = _insert(db, project, prompts, record.id)
    record.status = "succeeded"
    record.counts = outcome.counts
    record.finished_at = utcnow()
    db.flush()
    return outcome


def import_or_raise(
    db: Session, project: Project, source: BinaryIO, file_name: str | None, options: ImportOptions,
    user: User | None = None,
) -> ImportOutcome:
    """`run_import`, raising ImportFailed instead of returning a failed outcome (the caller rolls back)."""
    outcome = run_import(db, project, source, file_name, options, user)
    if not outcome.ok:
        raise ImportFailed(outcome)
    return outcome


def _file_digest(source: BinaryIO) -> str:
    source.seek(0)
    digest = hashlib.sha256()
    while chunk := source.read(1 << 20):
        digest.update(chunk)
    source.seek(0)
    return digest.hexdigest()


def _records(source: BinaryIO, fmt: FileFormat, options: ImportOptions,
             notes: dialects.Notes) -> Iterator[RawRecord | ImportIssue]:
    """The file's records in prefloop's shape: columns renamed as asked, other tools' exports translated."""
    renames = {}
    if not options.long_format:
        if options.prompt_column:
            renames[options.prompt_column] = "prompt"
        if options.id_column:
            renames[options.id_column] = "id"
    for item in iter_records(source, fmt, options):
        if renames and isinstance(item, RawRecord):
            item = RawRecord(item.line, {renames.get(k, k): v for k, v in item.data.items()}, item.tabular)
        translation = dialects.translate(item) if isinstance(item, RawRecord) else None
        if translation is None:
            yield item
            continue
        notes.count(translation)
        if translation.issues:
            yield from translation.issues
        else:
            yield translation.record


def _validate_all(
    items: Iterator[RawRecord | ImportIssue], project: Project
) -> tuple[list[PromptIn], list[ImportIssue], int]:
    rules = Rules(project.k_min, project.allow_fewer_than_k_min)
    prompts: dict[str, PromptIn] = {}
    issues: list[ImportIssue] = []
    count = 0

    def report(found: list[ImportIssue]) -> None:
        nonlocal count
        count += len(found)
        room = MAX_REPORTED_ISSUES - len(issues)
        if room > 0:
            issues.extend(found[:room])

    for item in items:
        if isinstance(item, ImportIssue):
            report([item])
            continue
        result = normalize(item, rules)
        if isinstance(result, list):
            report(result)
            continue
        earlier = prompts.get(result.external_id)
        if earlier is None:
            prompts[result.external_id] = result
        elif result.ranked and earlier.ranked and not result.id_given:
            _merge_rankings(earlier, result)
        elif _only_demonstrations(result) and earlier.demonstrations and not result.id_given:
            earlier.demonstrations += [d for d in result.demonstrations if d not in earlier.demonstrations]
        elif result.id_given:
            report([ImportIssue(result.line, "id", f"duplicate id {result.external_id!r} (first on line {earlier.line})")])
        else:
            report([ImportIssue(result.line, "prompt", f"duplicate prompt: same content as line {earlier.line}; "
                                                        "give each record a distinct `id` to keep both")])
    return list(prompts.values()), issues, count


def _only_demonstrations(prompt: PromptIn) -> bool:
    # A prompt-completion file (the `sft` export) repeats a prompt once per demonstration.
    return bool(prompt.demonstrations) and not prompt.completions and not prompt.rankings


def _merge_rankings(into: PromptIn, other: PromptIn) -> None:
    # Preference datasets repeat a prompt once per pair or per annotator: one prompt, its distinct answers, and
    # every ranking, re-indexed onto the merged answers.
    index = {c.text: i for i, c in enumerate(into.completions)}
    for ranking in other.rankings:
        ranks: dict[int, int] = {}
        for position, rank in ranking.ranks.items():
            completion = other.completions[position]
            if completion.text not in index:
                index[completion.text] = len(into.completions)
                into.completions.append(completion)
            ranks[index[completion.text]] = rank
        into.rankings.append(RankingIn(ranks, ranking.rationale, ranking.origin))


def _insert(db: Session, project: Project, prompts: list[PromptIn], import_id: int) -> dict[str, int]:
    existing = queries.existing_external_ids(db, project.id, (p.external_id for p in prompts))
    joined = _prompts_joined(db, project.id, prompts, existing)
    new = [p for p in prompts if p.external_id not in existing and p.external_id not in joined]
    now = utcnow()
    prompt_ids = queries.insert_prompts(
        db,
        [
            {
                "project_id": project.id,
                "external_id": p.external_id,
                "text": p.text,
                "messages": p.messages,
                "system": p.system,
                "metadata": p.meta,
                "content_hash": p.content_hash,
                "import_id": import_id,
                "is_gold": False,
                "priority": 0.0,
                "created_at": now,
            }
            for p in new
        ],
    )
    completion_rows: list[dict[str, Any]] = []
    for prompt_id, p in zip(prompt_ids, new, strict=True):
        for position, c in enumerate(p.completions):
            completion_rows.append(
                {
                    "prompt_id": prompt_id,
                    "position": position,
                    "text": c.text,
                    "source": "uploaded",
                    "model_name": c.model,
                    "round": 0,
                    "metadata": c.meta,
                    "import_id": import_id,
                    "created_at": now,
                }
            )
    completion_ids = queries.insert_completions(db, completion_rows)
    rankings, comparisons = _insert_rankings(db, project, new, prompt_ids, completion_ids, import_id)
    # A skipped prompt still gets the file's demonstrations it lacks; the same text is never stored twice.
    wanted = [ImportedDemonstration(pid, text) for pid, p in zip(prompt_ids, new, strict=True) for text in p.demonstrations]
    wanted += [ImportedDemonstration(joined[p.external_id], text) for p in prompts if p.external_id in joined
               for text in p.demonstrations]
    counts = {
        "records": len(prompts),
        "prompts_added": len(new),
        "prompts_skipped": len(prompts) - len(new),
        "completions_added": len(completion_ids),
        "rankings_added": rankings,
        "comparisons_added": comparisons,
        "demonstrations_added": demonstrations.add_imported(db, wanted, import_id),
    }
    if prompt_ids:
        counts["slots_created"] = slots.ensure_slots(db, project, prompt_ids)
    return counts


def _prompts_joined(db: Session, project_id: int, prompts: list[PromptIn], existing: set[str]) -> dict[str, int]:
    """The project's prompt (by external id of the record) that a record's demonstrations go to instead of a new
    prompt: the one with the same external id, or, for a record of demonstrations only and without `id`, the
    one with the same content (the `sft` export read back into its project carries no ids of its own)."""
    by_id = queries.prompt_ids_by_external_id(
        db, project_id, [p.external_id for p in prompts if p.external_id in existing and p.demonstrations])
    loose = [p for p in prompts if p.external_id not in existing and _only_demonstrations(p) and not p.id_given]
    by_text = queries.prompt_ids_by_content_hash(db, project_id, [p.content_hash for p in loose])
    return {**by_id, **{p.external_id: by_text[p.content_hash] for p in loose if p.content_hash in by_text}}


def _insert_rankings(
    db: Session, project: Project, prompts: list[PromptIn], prompt_ids: list[int], completion_ids: list[int],
    import_id: int,
) -> tuple[int, int]:
    """Each imported ranking: a Ranking (source 'imported') and its C(k,2) Comparisons, ties included.

    Returns (rankings, comparisons) added. The ranked answers are shown in file order; a tie row names the one
    shown first as the winner, as submitted rankings do."""
    now = utcnow()
    rankings: list[dict[str, Any]] = []
    orders: list[tuple[int, list[int], dict[int, int]]] = []
    offset = 0
    for prompt_id, p in zip(prompt_ids, prompts, strict=True):
        for ranking in p.rankings:
            ranks = {completion_ids[offset + i]: rank for i, rank in sorted(ranking.ranks.items())}
            shown = list(ranks)
            rankings.append(
                {
                    "project_id": project.id,
                    "prompt_id": prompt_id,
                    "source": "imported",
                    "import_id": import_id,
                    "ranks": {str(c): rank for c, rank in ranks.items()},
                    "shown_order": shown,
                    "flags": {},
                    "likert": {},
                    "rationale": ranking.rationale,
                    "not_rankable": False,
                    "client_info": {"imported": ranking.origin} if ranking.origin else {},
                    "payload_hash": "",
                    "suggestion_shown": False,
                    "weight": 1.0,
                    "created_at": now,
                }
            )
            orders.append((prompt_id, shown, ranks))
        offset += len(p.completions)
    if not rankings:
        return 0, 0
    ranking_ids = queries.insert_rankings(db, rankings)
    comparisons = [
        {
            "project_id": project.id,
            "prompt_id": prompt_id,
            "ranking_id": ranking_id,
            "winner_id": winner,
            "loser_id": loser,
            "winner_rank": ranks[winner],
            "loser_rank": ranks[loser],
            "rank_gap": ranks[loser] - ranks[winner],
            "is_tie": ranks[winner] == ranks[loser],
            "source": "imported",
            "import_id": import_id,
            "weight": 1.0,
            "created_at": now,
        }
        for ranking_id, (prompt_id, shown, ranks) in zip(ranking_ids, orders, strict=True)
        for winner, loser in _ordered_pairs(shown, ranks)
    ]
    queries.insert_comparisons(db, comparisons)
    return len(ranking_ids), len(comparisons)


def _ordered_pairs(shown: list[int], ranks: dict[int, int]) -> Iterator[tuple[int, int]]:
    """Every pair of shown answers as (winner, loser); for a tie, the one shown first."""
    for i, a in enumerate(shown):
        for b in shown[i + 1:]:
            yield (b, a) if ranks[b] < ranks[a] else (a, b)


def recent_imports(db: Session, project_id: int, limit: int = 20) -> list[ImportRecord]:
    """The latest imports of a project, newest first (the upload page's history)."""
    return queries.recent_imports(db, project_id, limit)
