"""Every SELECT and INSERT of the import feature: bulk inserts returning ids, never one row at a time."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from app.models import Comparison, Completion, ImportRecord, Prompt, Ranking

_CHUNK = 1000


def existing_external_ids(db: Session, project_id: int, external_ids: Iterable[str]) -> set[str]:
    """Those of `external_ids` that the project already has."""
    wanted = list(external_ids)
    found: set[str] = set()
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        found.update(
            db.scalars(
                select(Prompt.external_id).where(Prompt.project_id == project_id, Prompt.external_id.in_(chunk))
            )
        )
    return found


def prompt_ids_by_external_id(db: Session, project_id: int, external_ids: Iterable[str]) -> dict[str, int]:
    """The ids of the project's prompts with these external ids."""
    wanted = list(external_ids)
    found: dict[str, int] = {}
    for start in range(0, len(wanted), _CHUNK):
        stmt = select(Prompt.external_id, Prompt.id).where(
            Prompt.project_id == project_id, Prompt.external_id.in_(wanted[start : start + _CHUNK]))
        found.update((str(e), int(i)) for e, i in db.execute(stmt))
    return found


def prompt_ids_by_content_hash(db: Session, project_id: int, hashes: Iterable[str]) -> dict[str, int]:
    """The oldest prompt of the project with each of these content hashes (regular prompts only)."""
    wanted = sorted(set(hashes))
    found: dict[str, int] = {}
    for start in range(0, len(wanted), _CHUNK):
        stmt = (select(Prompt.content_hash, Prompt.id)
                .where(Prompt.project_id == project_id, Prompt.is_gold.is_(False),
                       Prompt.content_hash.in_(wanted[start : start + _CHUNK]))
                .order_by(Prompt.id.desc()))
        found.update((str(h), int(i)) for h, i in db.execute(stmt))  # the oldest is written last
    return found


def _insert_returning_ids(db: Session, table: Any, rows: Sequence[dict[str, Any]]) -> list[int]:
    # insertmanyvalues batches these into multi-row INSERT … RETURNING on both dialects, in parameter order.
    ids: list[int] = []
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        result = db.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), chunk)
        ids.extend(result.scalars().all())
    return ids


def insert_prompts(db: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert prompts, returning their ids in order. Rows without messages leave the column SQL NULL
    (a None bound to a JSON column would store the JSON literal `null`)."""
    plain = [i for i, row in enumerate(rows) if row.get("messages") is None]
    chat = [i for i, row in enumerate(rows) if row.get("messages") is not None]
    ids: list[int] = [0] * len(rows)
    plain_rows = [{k: v for k, v in rows[i].items() if k != "messages"} for i in plain]
    for i, new_id in zip(plain, _insert_returning_ids(db, Prompt.__table__, plain_rows), strict=True):
        ids[i] = new_id
    for i, new_id in zip(chat, _insert_returning_ids(db, Prompt.__table__, [rows[i] for i in chat]), strict=True):
        ids[i] = new_id
    return ids


def insert_completions(db: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    return _insert_returning_ids(db, Completion.__table__, rows)


def insert_rankings(db: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    return _insert_returning_ids(db, Ranking.__table__, rows)


def insert_comparisons(db: Session, rows: Sequence[dict[str, Any]]) -> None:
    for start in range(0, len(rows), _CHUNK):
        db.execute(insert(cast(Table, Comparison.__table__)), list(rows[start : start + _CHUNK]))


def add_import_record(db: Session, record: ImportRecord) -> ImportRecord:
    db.add(record)
    db.flush()
    return record


def recent_imports(db: Session, project_id: int, limit: int = 20) -> list[ImportRecord]:
    """The latest imports of a project, newest first."""
    return list(
        db.scalars(
            select(ImportRecord)
            .where(ImportRecord.project_id == project_id)
            .order_by(ImportRecord.id.desc())
            .limit(limit)
        )
    )


def get_import(db: Session, project_id: int, import_id: int) -> ImportRecord | None:
    return db.scalar(select(ImportRecord).where(ImportRecord.id == import_id, ImportRecord.project_id == project_id))


def get_import_by_id(db: Session, import_id: int) -> ImportRecord | None:
    return db.get(ImportRecord, import_id)


def running_imports(db: Session) -> list[ImportRecord]:
    """Every import still marked running (at start-up: those a dead process left)."""
    return list(db.scalars(select(ImportRecord).where(ImportRecord.status == "running").order_by(ImportRecord.id)))
