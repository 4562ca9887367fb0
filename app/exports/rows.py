"""Row builders, one per export kind: database tuples in, plain dicts out, cheaply (this is the hot loop).

Prompts are plain strings, or (when any prompt of the project has chat messages or a system prompt)
TRL's conversational format for every row, so a column never mixes strings and message lists.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row
from sqlalchemy.orm import Session

from app.exports import queries
from app.exports.provenance import labeler
from app.exports.schemas import ExportFilters, ExportOptions
from app.models import Project
from app.quality.service import consensus_export_rows

Message = dict[str, str]
BATCH = 500


def timestamp(value: datetime) -> str:
    """Fixed-width ISO 8601 in UTC (always six fractional digits), the same text the Postgres COPY path writes."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


class PromptShaper:
    """Turns (text, messages JSON, system) into the exported prompt, caching the last few decoded prompts."""

    def __init__(self, conversational: bool) -> None:
        self.conversational = conversational
        self._cache: dict[int, Any] = {}

    def __call__(self, prompt_id: int, text: str | None, messages: str | None, system: str | None) -> Any:
        cached = self._cache.get(prompt_id)
        if cached is not None:
            return cached
        if not self.conversational:
            shaped: Any = text or ""
        else:
            decoded = json.loads(messages) if messages else None
            chat: list[Message] = decoded or [{"role": "user", "content": text or ""}]
            if system and not (chat and chat[0].get("role") == "system"):
                chat = [{"role": "system", "content": system}, *chat]
            shaped = chat
        if len(self._cache) > 4096:  # rows arrive roughly grouped by prompt; a small cache is enough
            self._cache.clear()
        self._cache[prompt_id] = shaped
        return shaped

    def answer(self, text: str) -> Any:
        return [{"role": "assistant", "content": text}] if self.conversational else text


class FlatChatShaper(PromptShaper):
    """Conversations as plain text, one "role: content" turn per paragraph (CSV with --flatten-chat)."""

    def __init__(self) -> None:
        super().__init__(conversational=True)

    def __call__(self, prompt_id: int, text: str | None, messages: str | None, system: str | None) -> Any:
        chat = super().__call__(prompt_id, text, messages, system)
        return "\n\n".join(f"{m.get('role')}: {m.get('content')}" for m in chat)

    def answer(self, text: str) -> Any:
        return text


def _json(value: Any) -> dict[str, Any] | None:
    """A JSON column as read through a Core query: already a dict, or its text on some drivers."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def stored_json(text: str | None) -> str:
    """A JSON column exported as JSON text: the text as stored (`{}` for null), the same on the Postgres fast
    path, which has no way to re-encode it as Python would."""
    return "{}" if text is None or text == "null" else text


def pairs(conn: Connection, project_id: int, filters: ExportFilters, shaper: PromptShaper,
          options: ExportOptions) -> Iterator[dict[str, Any]]:
    """One row per non-tied comparison, in TRL's preference format plus provenance columns."""
    answer = shaper.answer
    margin = options.margin_column
    for (cid, prompt_id, ranking_id, annotator_id, winner_rank, loser_rank, rank_gap, source, weight, created_at,
         text, messages, system, chosen, rejected, chosen_id, rejected_id, chosen_version, rejected_version,
         chosen_version_name, rejected_version_name, strength, ranking_source, client_info) in queries.stream(conn,
                                                                                 queries.pairs_query(project_id, filters)):
        row = {
            "prompt": shaper(prompt_id, text, messages, system),
            "chosen": answer(chosen),
            "rejected": answer(rejected),
            "comparison_id": cid,
            "prompt_id": prompt_id,
            "group_id": ranking_id,
            "annotator_id": annotator_id,
            "chosen_completion_id": chosen_id,
            "rejected_completion_id": rejected_id,
            "chosen_model_version_id": chosen_version,
            "rejected_model_version_id": rejected_version,
            "chosen_model_version_name": chosen_version_name,
            "rejected_model_version_name": rejected_version_name,
            "chosen_rank": winner_rank,
            "rejected_rank": loser_rank,
            "rank_gap": rank_gap,
            "source": source,
            "labeler": labeler(ranking_source or source, _json(client_info)),
            "weight": weight,
            "created_at": timestamp(created_at),
        }
        if margin:  # a pairwise choice's strength (1 slightly … 3 much better); a ranking's rank gap
            row["margin"] = rank_gap if strength is None else strength
        yield row


def _ranking_batches(conn: Connection, project_id: int,
                     filters: ExportFilters) -> Iterator[tuple[list[Row[Any]], dict[int, queries.CompletionInfo]]]:
    batch: list[Row[Any]] = []
    query = queries.rankings_query(project_id, filters)
    for row in queries.stream(conn, query):
        batch.append(row)
        if len(batch) >= BATCH:
            yield batch, queries.completions_by_id(conn, [c for r in batch for c in r.shown_order])
            batch = []
    if batch:
        yield batch, queries.completions_by_id(conn, [c for r in batch for c in r.shown_order])


def _from_version(shown: list[int], texts: dict[int, queries.CompletionInfo], version: int | None) -> bool:
    return version is None or all(texts[c][1] == version for c in shown)


def rankings(conn: Connection, project_id: int, filters: ExportFilters, shaper: PromptShaper,
             options: ExportOptions) -> Iterator[dict[str, Any]]:
    """One row per ranking: the shown completions in shown order with their ranks (1 = best, ties equal)."""
    for batch, texts in _ranking_batches(conn, project_id, filters):
        for r in batch:
            shown = [c for c in r.shown_order if c in texts]
            if not _from_version(shown, texts, filters.model_version_id):
                continue
            ranks = r.ranks or {}
            yield {
                "ranking_id": r.id,
                "prompt_id": r.prompt_id,
                "prompt": shaper(r.prompt_id, r.text, r.messages, r.system),
                "completions": [texts[c][0] for c in shown],
                "completion_ids": shown,
                "model_version_ids": [texts[c][1] for c in shown],
                "model_version_names": [texts[c][2] for c in shown],
                "ranks": [ranks.get(str(c)) for c in shown],
                "shown_order": list(r.shown_order),
                "annotator_id": r.annotator_id,
                "flags": stored_json(r.flags),
                "likert": stored_json(r.likert),
                "rationale": r.rationale or "",
                "not_rankable": bool(r.not_rankable),
                "wall_seconds": r.wall_seconds,
                "active_seconds": r.active_seconds,
                "weight": r.weight,
                "source": r.source,
                "labeler": labeler(r.source, _json(r.client_info)),
                "created_at": timestamp(r.created_at),
            }


def rm(conn: Connection, project_id: int, filters: ExportFilters, shaper: PromptShaper,
       options: ExportOptions) -> Iterator[dict[str, Any]]:
    """The reward-model dataset: prompt, the ranked completions, and their ranking (smaller is better)."""
    for row in rankings(conn, project_id, filters, shaper, options):
        ranked = [(text, rank) for text, rank in zip(row["completions"], row["ranks"], strict=True) if rank is not None]
        if row["not_rankable"] or len(ranked) < 2 or len({rank for _, rank in ranked}) < 2:
            continue
        yield {
            "prompt_id": row["prompt_id"],
            "prompt": row["prompt"],
            "completion": [text for text, _ in ranked],
            "ranking": [rank for _, rank in ranked],
        }


def prompts(conn: Connection, project_id: int, filters: ExportFilters, shaper: PromptShaper,
            options: ExportOptions) -> Iterator[dict[str, Any]]:
    """The prompt set for policy training (PPO/RLOO): prompts only."""
    for prompt_id, text, messages, system in queries.stream(conn, queries.prompts_query(project_id, filters)):
        yield {"prompt_id": prompt_id, "prompt": shaper(prompt_id, text, messages, system)}


def sft(conn: Connection, project_id: int, filters: ExportFilters, shaper: PromptShaper,
        options: ExportOptions) -> Iterator[dict[str, Any]]:
    """Prompt + demonstration (TRL's prompt-completion format): every demonstration, written by an annotator
    beside a ranking or imported, with who wrote it. It imports back as demonstrations (the `sft` dialect)."""
    for (did, prompt_id, text, source, ranking_id, annotator_id, created_at, prompt_text, messages, system,
         ranking_source, client_info) in queries.stream(conn, queries.demonstrations_query(project_id, filters)):
        yield {
            "prompt_id": prompt_id,
            "prompt": shaper(prompt_id, prompt_text, messages, system),
            "completion": shaper.answer(text),
            "ranking_id": ranking_id,
            "annotator_id": annotator_id,
            "created_at": timestamp(created_at),
            "demonstration_id": did,
            "source": source,
            "labeler": labeler("imported" if source == "imported" else ranking_source, _json(client_info)),
        }


def consensus(conn: Connection, project_id: int, filters: ExportFilters, shaper: PromptShaper,
              options: ExportOptions) -> Iterator[dict[str, Any]]:
    """The consensus subset (app.quality): one row per prompt with >= 2 human rankings, with the trust-weighted
    ranked-pairs order and Bradley-Terry scores. Filters do not apply: a consensus needs all its rankings."""
    with Session(bind=conn) as db:
        project = db.get(Project, project_id)
        if project is None:
            return
        yield from consensus_export_rows(
            db, project, lambda p: shaper(p.id, p.text, json.dumps(p.messages) if p.messages else None, p.system)
        )


BUILDERS = {"pairs": pairs, "rankings": rankings, "rm": rm, "prompts": prompts, "sft": sft, "consensus": consensus}
