"""Importing a file into a project: parse, validate every record, then insert everything or nothing.

The whole file is read and validated before the first INSERT (`check_file`, which keeps one small int per
prompt, not the parsed file), so a bad file leaves the project untouched and the report lists every problem.
A clean file is then read again and inserted in batches inside the caller's one transaction
(`insert_checked`), which bounds memory without giving up all-or-nothing. A failed import is recorded as an `imports` row with
status `failed` and its errors (the only write of that unit of work); a successful one as `succeeded`
with its counts. Prompts already in the project (same external id: the given `id`, else the content
hash) are skipped, which makes re-importing a file a no-op; a skipped prompt still gets the file's
demonstrations it does not have yet (app.demonstrations).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast, get_args

from sqlalchemy.orm import Session

from app.demonstrations import service as demonstrations
from app.demonstrations.service import ImportedDemonstration
from app.errors import NotFound
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

_FORMATS = frozenset(get_args(FileFormat))
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


# What the first pass keeps of each prompt, packed in one int keyed by its external id: the line it starts on,
# the last record merged into it and whether it is ranked / has demonstrations. One int per prompt instead of
# the parsed prompt keeps a 100k-line file's check within a few tens of MB; the second pass re-reads the file.
_RANKED, _DEMOS, _INDEX_BITS = 1, 2, 32


def _pack(line: int, index: int, flags: int) -> int:
    return (line << (_INDEX_BITS + 2)) | (index << 2) | flags


def _unpack(value: int) -> tuple[int, int, int]:
    return value >> (_INDEX_BITS + 2), (value >> 2) & ((1 << _INDEX_BITS) - 1), value & 3


# Prompts inserted per batch in the second pass: bounds what the import holds in memory at once.
BATCH_PROMPTS = 500

Progress = Callable[[str, int], None]


def _no_progress(_phase: str, _count: int) -> None:
    return None


@dataclass
class CheckedFile:
    """The first pass over a file: every problem found, and for each prompt the last record merged into it."""

    file_name: str
    file_format: FileFormat
    issues: list[ImportIssue]
    issue_count: int
    notes: list[str]
    # Each prompt's external id -> its packed first line, last merged record and flags (see `_pack`).
    last_record: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.issues

    def outcome(self) -> ImportOutcome:
        return ImportOutcome(ok=self.ok, file_name=self.file_name, file_format=self.file_format,
                             issues=self.issues, issue_count=self.issue_count, notes=self.notes)


def rules_of(project: Project) -> Rules:
    """The validation rules a project imposes on every record."""
    return Rules(project.k_min, project.allow_fewer_than_k_min)


def file_format_of(file_name: str, head: bytes, options: ImportOptions) -> FileFormat:
    """The format asked for, else the one detected from the name and the first bytes."""
    return options.format or detect_format(file_name, head)


def run_import(
    db: Session,
    project: Project,
    source: BinaryIO,
    file_name: str | None,
    options: ImportOptions,
    user: User | None = None,
) -> ImportOutcome:
    """Import `source` into `project` in the caller's unit of work (the CLI). Never commits.

    Returns the outcome; when `ok` is false nothing but the failed import record was written.
    """
    name = safe_file_name(file_name)
    sha256 = _file_digest(source)
    fmt = file_format_of(name, source.read(4096), options)
    source.seek(0)
    record = queue_import(db, project, name, sha256, fmt, user)
    checked = check_file(source, name, fmt, options, rules_of(project))
    if not checked.ok:
        return fail_import(db, record, checked)
    source.seek(0)
    return insert_checked(db, project, record, source, options, checked)


def queue_import(db: Session, project: Project, file_name: str, sha256: str, fmt: FileFormat,
                 user: User | None) -> ImportRecord:
    """The `running` record of an import about to start (the upload page polls it until it is finished)."""
    record = ImportRecord(project_id=project.id, user_id=user.id if user else None, file_name=file_name,
                          file_sha256=sha256, file_format=fmt, status="running", counts={}, errors=[])
    return queries.add_import_record(db, record)


def check_file(source: BinaryIO, file_name: str, fmt: FileFormat, options: ImportOptions, rules: Rules,
               progress: Progress = _no_progress) -> CheckedFile:
    """First pass: read and validate every record without touching the database. `progress` hears
    ("checking", lines read) now and then."""
    notes = dialects.Notes()
    last: dict[str, int] = {}
    issues: list[ImportIssue] = []
    count = 0

    def report(found: list[ImportIssue]) -> None:
        nonlocal count
        count += len(found)
        room = MAX_REPORTED_ISSUES - len(issues)
        if room > 0:
            issues.extend(found[:room])

    index = read = 0
    for item in _records(source, fmt, options, notes):
        read += 1
        if read % 1000 == 0:
            progress("checking", item.line)
        if isinstance(item, ImportIssue):
            report([item])
            continue
        result = normalize(item, rules)
        if isinstance(result, list):
            report(result)
            continue
        index += 1
        packed = last.get(result.external_id)
        if packed is None:
            flags = (_RANKED if result.ranked else 0) | (_DEMOS if result.demonstrations else 0)
            last[result.external_id] = _pack(result.line, index, flags)
            continue
        line, _, flags = _unpack(packed)
        mergeable = (result.ranked and flags & _RANKED) or (_only_demonstrations(result) and flags & _DEMOS)
        if mergeable and not result.id_given:
            last[result.external_id] = _pack(line, index, flags)
        elif result.id_given:
            report([ImportIssue(result.line, "id", f"duplicate id {result.external_id!r} (first on line {line})")])
        else:
            report([ImportIssue(result.line, "prompt", f"duplicate prompt: same content as line {line}; "
                                                        "give each record a distinct `id` to keep both")])
    if not issues and not last:
        issues, count = [ImportIssue(0, "file", "the file contains no records")], 1
    return CheckedFile(file_name, fmt, issues, count, notes.sentences(), last)


def fail_import(db: Session, record: ImportRecord, checked: CheckedFile) -> ImportOutcome:
    """Mark the import failed with its problems (the first 1,000 are kept on the record)."""
    outcome = checked.outcome()
    record.status = "failed"
    record.errors = [issue.as_dict() for issue in checked.issues[:1000]]
    record.counts = {"errors": checked.issue_count}
    record.finished_at = utcnow()
    db.flush()
    outcome.import_id = record.id
    return outcome


def insert_checked(db: Session, project: Project, record: ImportRecord, source: BinaryIO, options: ImportOptions,
                   checked: CheckedFile, progress: Progress = _no_progress) -> ImportOutcome:
    """Second pass over a file `check_file` found clean: insert it batch by batch in the caller's transaction
    (all or nothing: the caller commits once), then mark the record succeeded. `progress` hears
    ("importing", records inserted) after each batch."""
    counts: dict[str, int] = {}
    batch: list[PromptIn] = []
    added: list[int] = []
    done = 0
    for prompt in _merged_prompts(_records(source, checked.file_format, options, dialects.Notes()),
                                  rules_of(project), checked.last_record):
        batch.append(prompt)
        if len(batch) >= BATCH_PROMPTS:
            _add_counts(counts, _insert(db, project, batch, record.id, added))
            done += len(batch)
            batch = []
            progress("importing", done)
    if batch:
        _add_counts(counts, _insert(db, project, batch, record.id, added))
        progress("importing", done + len(batch))
    if added:
        # Once for the whole file: each call counts the candidates of every prompt, so per batch is quadratic.
        counts["slots_created"] = slots.ensure_slots(db, project, added)
    outcome = checked.outcome()
    outcome.import_id = record.id
    outcome.counts = counts
    record.status = "succeeded"
    record.counts = counts
    record.finished_at = utcnow()
    db.flush()
    return outcome


def _add_counts(total: dict[str, int], batch: dict[str, int]) -> None:
    for key, value in batch.items():
        total[key] = total.get(key, 0) + value


def _merged_prompts(items: Iterator[RawRecord | ImportIssue], rules: Rules,
                    last_record: dict[str, int]) -> Iterator[PromptIn]:
    """The file's prompts in order of first appearance, each once all the records merged into it are read.

    Only prompts still waiting for a later record of theirs are held, so a file whose repeated prompts are
    close together (one row per pair or per annotator) is imported in bounded memory."""
    waiting: dict[str, PromptIn] = {}
    for index, item in enumerate(items, start=1):
        result = normalize(item, rules) if isinstance(item, RawRecord) else [item]
        if isinstance(result, list):
            raise RuntimeError(f"line {result[0].line} of the file changed after it was checked")
        earlier = waiting.get(result.external_id)
        if earlier is None:
            waiting[result.external_id] = result
        elif result.ranked and earlier.ranked:
            _merge_rankings(earlier, result)
        else:
            earlier.demonstrations += [d for d in result.demonstrations if d not in earlier.demonstrations]
        while waiting:
            first = next(iter(waiting))
            if _unpack(last_record[first])[1] > index:
                break
            yield waiting.pop(first)
    yield from waiting.values()


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


def _insert(db: Session, project: Project, prompts: list[PromptIn], import_id: int,
            new_prompt_ids: list[int]) -> dict[str, int]:
    """Insert one batch of prompts; the ids of the new ones are appended to `new_prompt_ids`."""
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
    new_prompt_ids.extend(prompt_ids)
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


INTERRUPTED = "the import was interrupted (the server stopped before it finished); nothing was imported"


class ImportNotFound(NotFound, LookupError):
    """No import with that id in the project."""


def get_import(db: Session, project_id: int, import_id: int) -> ImportRecord:
    """One import of a project (its status, counts and errors)."""
    record = queries.get_import(db, project_id, import_id)
    if record is None:
        raise ImportNotFound(f"no import {import_id} in project {project_id}")
    return record


def get_import_for_run(db: Session, import_id: int) -> ImportRecord:
    """The record of an import the background runner is about to run or finish."""
    record = queries.get_import_by_id(db, import_id)
    if record is None:
        raise ImportNotFound(f"no import {import_id}")
    return record


def known_format(name: str) -> FileFormat:
    """A stored format name, checked."""
    if name not in _FORMATS:
        raise ValueError(f"unknown import format {name!r}")
    return cast(FileFormat, name)


def outcome_of(record: ImportRecord) -> ImportOutcome:
    """The outcome of a finished import as its record keeps it (the notes are not kept)."""
    issues = [ImportIssue(int(e["line"]), str(e["field"]), str(e["reason"])) for e in record.errors]
    counts = {k: v for k, v in record.counts.items() if isinstance(v, int)}
    return ImportOutcome(ok=record.status == "succeeded", file_name=record.file_name,
                         file_format=record.file_format, import_id=record.id,
                         counts=counts if record.status == "succeeded" else {}, issues=issues,
                         issue_count=int(record.counts.get("errors", len(issues))))


def fail_unfinished(db: Session, record: ImportRecord, reason: str) -> None:
    """Mark an import that stopped without finishing (an error, a crash) failed, naming why."""
    record.status = "failed"
    record.errors = [ImportIssue(0, "file", reason).as_dict()]
    record.counts = {"errors": 1}
    record.finished_at = utcnow()
    db.flush()


def fail_interrupted(db: Session) -> int:
    """At start-up: imports left `running` by a server that died are failed (their rows were rolled back with
    the transaction that died). Returns how many."""
    records = queries.running_imports(db)
    for record in records:
        fail_unfinished(db, record, INTERRUPTED)
    return len(records)


def recent_imports(db: Session, project_id: int, limit: int = 20) -> list[ImportRecord]:
    """The latest imports of a project, newest first (the upload page's history)."""
    return queries.recent_imports(db, project_id, limit)
