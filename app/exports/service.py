"""Running an export: one snapshot, rows built per kind, written per format to a file, a stream or a bundle.

Exports read through their own connection (never the request's session) so a streamed download can
outlive the request's unit of work.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from app.auth import service as auth
from app.errors import Invalid
from app.exports import pg_copy, queries
from app.exports.columns import schema_for
from app.exports.rows import BUILDERS, FlatChatShaper, PromptShaper
from app.exports.schemas import FORMATS, KINDS, TRAINED_KINDS, ExportFilters, ExportOptions
from app.exports.writers import ChunkSink, ParquetWriter, Sink, Writer, make_writer

BATCH_ROWS = 5000
BUNDLE_FORMATS = ("parquet", "jsonl")


class ExportError(Invalid, ValueError):
    """An export request that cannot be honoured (bad filter, unknown kind, unwritable target); a 400."""


@dataclass
class BundleResult:
    path: Path
    fmt: str
    rows: dict[str, dict[str, int]] = field(default_factory=dict)


def parse_since(value: str | None) -> datetime | None:
    """An ISO date or datetime (naive means UTC)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ExportError(f"--since: not an ISO date/datetime: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def resolve_filters(
    db: Session, project_id: int, since: str | None, annotator: str | None, model_version: int | None,
    *, humans_only: bool = False, trained_version: str | None = None,
) -> ExportFilters:
    """Filters from user input: the annotator by id or email; the model version must belong to the project;
    the trained version by id or name, of the project."""
    annotator_id: int | None = None
    if annotator:
        if annotator.strip().isdigit():
            annotator_id = int(annotator)
        else:
            try:
                annotator_id = auth.get_user_by_email(db, annotator).id
            except auth.AuthError as exc:
                raise ExportError(f"annotator {annotator!r} not found") from exc
    if model_version is not None and not queries.model_version_in_project(db.connection(), project_id, model_version):
        raise ExportError(f"model version {model_version} not found in this project")
    trained_version_id = resolve_version(db, project_id, trained_version) if trained_version else None
    return ExportFilters(since=parse_since(since), annotator_id=annotator_id, model_version_id=model_version,
                         humans_only=humans_only, trained_version_id=trained_version_id)


def resolve_version(db: Session, project_id: int, ref: str) -> int:
    """The id of the project's model version `ref` (its id or its name)."""
    ref = ref.strip()
    found = queries.versions_named(db.connection(), project_id, ref)
    if not found:
        raise ExportError(f"trained version: model version {ref!r} not found in this project (give its id or name, "
                          "as on the models page)")
    if len(found) > 1:
        ids = ", ".join(str(i) for i, _ in found)
        raise ExportError(f"trained version: {len(found)} model versions are named {ref!r} (ids {ids}); give the id")
    return found[0][0]


def trained_kinds(conn: Connection, version_id: int) -> tuple[str, ...]:
    """The export kinds whose rows a version's recorded lineage names (empty: it has none)."""
    lineages = queries.lineages_of(conn, version_id)
    return tuple(kind for kind in KINDS if any(kind in TRAINED_KINDS[name] for name in lineages))


def check_trained(conn: Connection, kind: str, filters: ExportFilters) -> None:
    """Refuses a trained-version filter on a kind the version's lineage says nothing about."""
    version_id = filters.trained_version_id
    if version_id is None:
        return
    name = queries.version_name(conn, version_id)
    if name is None:
        raise ExportError(f"trained version: model version {version_id} not found")
    kinds = trained_kinds(conn, version_id)
    label = f"model version {name} (id {version_id})"
    if not kinds:
        raise ExportError(f"trained version: {label} has no recorded training data (a base model, or one not "
                          "finished training), so no rows trained it")
    if kind not in kinds:
        lineages = " and ".join(sorted(queries.lineages_of(conn, version_id)))
        raise ExportError(f"trained version: {label} was trained on {lineages}; export kind "
                          f"{' or '.join(kinds)} for its training rows, not {kind}")


def _check(kind: str, fmt: str) -> None:
    if kind not in KINDS:
        raise ExportError(f"unknown kind {kind!r} (one of {', '.join(KINDS)})")
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")


def _rows(conn: Connection, project_id: int, kind: str, filters: ExportFilters,
          options: ExportOptions, conversational: bool, flat: bool = False) -> Iterator[dict[str, Any]]:
    shaper = FlatChatShaper() if flat else PromptShaper(conversational)
    return BUILDERS[kind](conn, project_id, filters, shaper, options)


def check_shape(conn: Connection, project_id: int, fmt: str, options: ExportOptions) -> tuple[bool, bool]:
    """(conversational, flattened): refuses CSV of conversations unless they are to be flattened (JSON text
    in a CSV cell is what a trainer would read as a plain-text prompt)."""
    conversational = queries.has_conversational_prompts(conn, project_id)
    if conversational and fmt == "csv" and not options.flatten_chat:
        raise ExportError("this project's prompts are conversations, which CSV can only carry as JSON text that "
                          "trainers read as plain text: export jsonl or parquet (TRL's conversational format), or "
                          "ask for --flatten-chat to write each conversation as 'role: content' turns")
    flat = conversational and fmt == "csv" and options.flatten_chat
    return conversational and not flat, flat


def ensure_exportable(engine: Engine, project_id: int, kind: str, fmt: str, options: ExportOptions,
                      filters: ExportFilters | None = None) -> None:
    """Every check an export makes before its first byte, for callers that stream (HTTP)."""
    _check(kind, fmt)
    with queries.snapshot(engine) as conn:
        check_shape(conn, project_id, fmt, options)
        check_trained(conn, kind, filters or ExportFilters())


class _CopiedLines:
    """The writer stand-in of the Postgres fast path: bytes arrive ready-made, only rows are counted."""

    def __init__(self) -> None:
        self.rows = 0


def _write_copied(conn: Connection, kind: str, project_id: int, filters: ExportFilters, options: ExportOptions,
                  sink: Sink, conversational: bool) -> Iterator[_CopiedLines]:
    progress = _CopiedLines()
    for chunk, rows in pg_copy.stream_jsonl(conn, kind, project_id, filters, options, conversational):
        sink.write(chunk)
        progress.rows += rows
        yield progress
    yield progress


def _write_copied_parquet(conn: Connection, kind: str, project_id: int, filters: ExportFilters,
                          options: ExportOptions, sink: Sink, conversational: bool) -> Iterator[Writer]:
    writer = ParquetWriter(sink, schema_for(kind, conversational, options.margin_column))
    for table in pg_copy.stream_tables(conn, kind, project_id, filters, options, conversational, writer.schema,
                                       BATCH_ROWS):
        writer.write_table(table)
        yield writer
    writer.close()
    yield writer


def _write(conn: Connection, project_id: int, kind: str, filters: ExportFilters, options: ExportOptions,
           sink: Sink, fmt: str, *, fast: bool = True) -> Iterator[Writer | _CopiedLines]:
    """Feed a new writer batch by batch, yielding it after each batch so a caller can drain its sink."""
    conversational, flat = check_shape(conn, project_id, fmt, options)
    check_trained(conn, kind, filters)
    if fast and kind in pg_copy.FAST_KINDS and fmt in ("jsonl", "parquet") and conn.dialect.name == "postgresql":
        copied = _write_copied if fmt == "jsonl" else _write_copied_parquet
        yield from copied(conn, kind, project_id, filters, options, sink, conversational)
        return
    writer = make_writer(fmt, sink, schema_for(kind, conversational, options.margin_column))
    batch: list[dict[str, Any]] = []
    for row in _rows(conn, project_id, kind, filters, options, conversational, flat):
        batch.append(row)
        if len(batch) >= BATCH_ROWS:
            writer.write_rows(batch)
            batch = []
            yield writer
    writer.write_rows(batch)
    writer.close()
    yield writer


def export_to_sink(engine: Engine, project_id: int, kind: str, fmt: str, sink: Sink,
                   filters: ExportFilters | None = None, options: ExportOptions | None = None,
                   *, fast: bool = True) -> int:
    """Write one export to `sink`; returns the number of rows. `fast=False` forces the generic row path."""
    _check(kind, fmt)
    filters, options = filters or ExportFilters(), options or ExportOptions()
    rows = 0
    with queries.snapshot(engine) as conn:
        for writer in _write(conn, project_id, kind, filters, options, sink, fmt, fast=fast):
            rows = writer.rows
    return rows


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def export_to_file(engine: Engine, project_id: int, kind: str, fmt: str, path: Path,
                   filters: ExportFilters | None = None, options: ExportOptions | None = None) -> int:
    """Write an export to `path` atomically: a temporary file beside it, renamed only once complete."""
    path = path.resolve()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            rows = export_to_sink(engine, project_id, kind, fmt, handle, filters, options)
            handle.flush()
            os.chmod(handle.fileno(), 0o666 & ~_umask())  # mkstemp makes it 0600; a finished export is a normal file
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return rows


def stream_export(engine: Engine, project_id: int, kind: str, fmt: str,
                  filters: ExportFilters | None = None, options: ExportOptions | None = None) -> Iterator[bytes]:
    """The export as byte chunks, for a streaming HTTP response. Owns its own connection and snapshot."""
    _check(kind, fmt)
    filters, options = filters or ExportFilters(), options or ExportOptions()
    sink = ChunkSink()
    with queries.snapshot(engine) as conn:
        for _writer in _write(conn, project_id, kind, filters, options, sink, fmt):
            chunk = sink.take()
            if chunk:
                yield chunk


def split_of(prompt_id: int, test_fraction: float) -> str:
    """'test' or 'train' by a hash of the prompt id: deterministic, and a prompt's rows never straddle splits."""
    bucket = int.from_bytes(hashlib.blake2b(str(prompt_id).encode(), digest_size=8).digest(), "big") / 2**64
    return "test" if bucket < test_fraction else "train"


def write_bundle(engine: Engine, project_id: int, target: Path, fmt: str = "parquet", test_fraction: float = 0.1,
                 filters: ExportFilters | None = None, options: ExportOptions | None = None) -> BundleResult:
    """A directory `datasets.load_dataset(DIR, KIND)` loads offline: every kind, train/test split by prompt id.

    All kinds come from one snapshot. The directory is built beside `target` and renamed into place, so a
    failed export leaves no half bundle; `target` must not exist or be empty.
    """
    if fmt not in BUNDLE_FORMATS:
        raise ExportError(f"bundles are written as {' or '.join(BUNDLE_FORMATS)}, not {fmt}")
    if not 0.0 <= test_fraction < 1.0:
        raise ExportError("test fraction must be in [0, 1)")
    target = target.resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ExportError(f"{target} exists and is not an empty directory")
    filters, options = filters or ExportFilters(), options or ExportOptions()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    result = BundleResult(target, fmt)
    try:
        with queries.snapshot(engine) as conn:
            conversational = queries.has_conversational_prompts(conn, project_id)
            for kind in _bundle_kinds(conn, filters):
                result.rows[kind] = _write_kind_splits(conn, project_id, kind, fmt, staging, conversational,
                                                       test_fraction, filters, options)
        (staging / "README.md").write_text(bundle_readme(fmt, result.rows), encoding="utf-8")
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def _bundle_kinds(conn: Connection, filters: ExportFilters) -> tuple[str, ...]:
    """Every kind; with a trained version, the kinds its lineage names (the others would say nothing)."""
    if filters.trained_version_id is None:
        return KINDS
    kinds = trained_kinds(conn, filters.trained_version_id)
    check_trained(conn, kinds[0] if kinds else "", filters)
    return kinds


def _write_kind_splits(conn: Connection, project_id: int, kind: str, fmt: str, staging: Path, conversational: bool,
                       test_fraction: float, filters: ExportFilters, options: ExportOptions) -> dict[str, int]:
    schema = schema_for(kind, conversational, options.margin_column)
    (staging / kind).mkdir()
    handles = {split: (staging / kind / f"{split}.{fmt}").open("wb") for split in ("train", "test")}
    try:
        writers = {split: make_writer(fmt, handle, schema) for split, handle in handles.items()}
        batches: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
        for row in _rows(conn, project_id, kind, filters, options, conversational):
            split = split_of(row["prompt_id"], test_fraction)
            batches[split].append(row)
            if len(batches[split]) >= BATCH_ROWS:
                writers[split].write_rows(batches[split])
                batches[split] = []
        for split, writer in writers.items():
            writer.write_rows(batches[split])
            writer.close()
    finally:
        for handle in handles.values():
            handle.close()
    return {split: writer.rows for split, writer in writers.items()}


def bundle_readme(fmt: str, rows: dict[str, dict[str, int]]) -> str:
    """The dataset card: a YAML header declaring one config per kind with its train/test data files."""
    lines = ["---", "configs:"]
    kinds = [kind for kind in KINDS if kind in rows]
    default = "pairs" if "pairs" in rows else kinds[0]
    for kind in kinds:
        lines.append(f"- config_name: {kind}")
        if kind == default:
            lines.append("  default: true")
        lines.append("  data_files:")
        # `datasets` cannot load a split with no rows, so empty splits are left out of the card (the files
        # are still there); a kind with no rows at all keeps its empty train split.
        splits = [split for split in ("train", "test") if rows[kind][split]] or ["train"]
        for split in splits:
            lines.append(f"  - split: {split}")
            lines.append(f"    path: {kind}/{split}.{fmt}")
    lines.append("---")
    lines.append("")
    lines.append("# prefloop export")
    lines.append("")
    lines.append(f"Exported {datetime.now(UTC).isoformat(timespec='seconds')} from one database snapshot. "
                 "Train/test split by a hash of the prompt id.")
    lines.append("")
    lines.append("| config | train | test |")
    lines.append("| --- | --- | --- |")
    for kind in kinds:
        lines.append(f"| {kind} | {rows[kind]['train']} | {rows[kind]['test']} |")
    lines.append("")
    lines.append(f"Load with `datasets.load_dataset(\"<this directory>\", \"{default}\")`. See docs/formats.md.")
    return "\n".join(lines) + "\n"
