"""The Postgres fast path of the `pairs` JSONL export: Postgres builds each JSON line and streams it with COPY.

Building rows in Python costs more than fetching them (driver decoding, JSON encoding, timestamp
formatting); here the server does all of it and Python only moves bytes, which keeps the export close
to `psql \\copy` speed (bench/export.py). The lines carry the same keys and values as the generic path
(`app.exports.rows.pairs`); only insignificant JSON spacing and key order inside messages differ, and a
test checks the two paths agree row by row.

Lines travel in binary COPY (no escaping to undo), a thousand per message, so Python's per-row work is nil.
"""

# ruff: noqa: S608 - only this module's constant SQL fragments are interpolated; values are bound parameters.
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection

from app.exports.provenance import labeler_sql
from app.exports.schemas import ExportFilters, ExportOptions

ROWS_PER_CHUNK = 1000

_PLAIN_PROMPT = "coalesce(p.text, '')"
# The chat shape of `PromptShaper`: stored messages (or one user turn from the text), system turn prepended.
_CHAT_BASE = (
    "CASE WHEN jsonb_typeof(p.messages::jsonb) = 'array' AND jsonb_array_length(p.messages::jsonb) > 0 "
    "THEN p.messages::jsonb "
    "ELSE jsonb_build_array(jsonb_build_object('role', 'user', 'content', coalesce(p.text, ''))) END"
)
_CHAT_PROMPT = (
    f"CASE WHEN coalesce(p.system, '') <> '' AND coalesce(({_CHAT_BASE})->0->>'role', '') <> 'system' "
    f"THEN jsonb_build_array(jsonb_build_object('role', 'system', 'content', p.system)) || ({_CHAT_BASE}) "
    f"ELSE ({_CHAT_BASE}) END"
)
# Python writes floats with a decimal point (1.0); keep that so readers infer the same column type.
_WEIGHT = "CASE WHEN c.weight = trunc(c.weight) THEN to_json(c.weight::numeric(30, 1)) ELSE to_json(c.weight) END"


# Fixed-width UTC text, six fractional digits: the generic path's rows.timestamp() writes the same.
_TIMESTAMP = """'"' || to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00"'"""


def _answer(column: str, conversational: bool) -> str:
    if conversational:
        return f"""'[{{"role":"assistant","content":' || to_json({column})::text || '}}]'"""
    return f"to_json({column})::text"


def _json_object(fields: list[tuple[str, str]]) -> str:
    """A JSON object built by concatenation (cheaper than json_build_object); NULL values become null."""
    members = [f"""'"{name}":' || coalesce({expr}, 'null')""" for name, expr in fields]
    return "'{' || " + " || ',' || ".join(members) + " || '}'"


def pairs_sql(project_id: int, filters: ExportFilters, options: ExportOptions,
              conversational: bool) -> tuple[str, dict[str, Any]]:
    """The COPY statement and its parameters (bound client-side by psycopg)."""
    fields = [
        ("prompt", f"({_CHAT_PROMPT})::text" if conversational else f"to_json({_PLAIN_PROMPT})::text"),
        ("chosen", _answer("w.text", conversational)),
        ("rejected", _answer("l.text", conversational)),
        ("comparison_id", "c.id::text"),
        ("prompt_id", "c.prompt_id::text"),
        ("group_id", "c.ranking_id::text"),
        ("annotator_id", "c.annotator_id::text"),
        ("chosen_completion_id", "c.winner_id::text"),
        ("rejected_completion_id", "c.loser_id::text"),
        ("chosen_model_version_id", "w.model_version_id::text"),
        ("rejected_model_version_id", "l.model_version_id::text"),
        ("chosen_model_version_name", "to_json(wv.name)::text"),
        ("rejected_model_version_name", "to_json(lv.name)::text"),
        ("chosen_rank", "c.winner_rank::text"),
        ("rejected_rank", "c.loser_rank::text"),
        ("rank_gap", "c.rank_gap::text"),
        ("source", "to_json(c.source)::text"),
        ("labeler", labeler_sql("coalesce(r.source, c.source)", "r.client_info")),
        ("weight", f"({_WEIGHT})::text"),
        ("created_at", _TIMESTAMP.format(column="c.created_at")),
    ]
    if options.margin_column:
        fields.append(("margin", "coalesce(c.strength, c.rank_gap)::text"))
    where = ["c.project_id = %(project_id)s", "NOT c.is_tie"]
    params: dict[str, Any] = {"project_id": project_id}
    if filters.since is not None:
        where.append("c.created_at >= %(since)s")
        params["since"] = filters.since
    if filters.annotator_id is not None:
        where.append("c.annotator_id = %(annotator_id)s")
        params["annotator_id"] = filters.annotator_id
    if filters.model_version_id is not None:
        where.append("w.model_version_id = %(version)s AND l.model_version_id = %(version)s")
        params["version"] = filters.model_version_id
    if filters.humans_only:
        where.append("(r.source IS NULL OR r.source <> 'ai')")
    # Lines travel in chunks of up to ROWS_PER_CHUNK (by id range, so no sort of the whole result):
    # Python's per-message overhead is paid per chunk, not per row.
    query = (
        f"SELECT string_agg({_json_object(fields)}, E'\\n' ORDER BY c.id) || E'\\n' "
        "FROM comparisons c "
        "JOIN prompts p ON p.id = c.prompt_id "
        "LEFT JOIN rankings r ON r.id = c.ranking_id "
        "JOIN completions w ON w.id = c.winner_id "
        "JOIN completions l ON l.id = c.loser_id "
        "LEFT JOIN model_versions wv ON wv.id = w.model_version_id "
        "LEFT JOIN model_versions lv ON lv.id = l.model_version_id "
        f"WHERE {' AND '.join(where)} "
        f"GROUP BY c.id / {ROWS_PER_CHUNK} ORDER BY c.id / {ROWS_PER_CHUNK}"
    )
    return f"COPY ({query}) TO STDOUT (FORMAT BINARY)", params


def stream_pairs_jsonl(conn: Connection, project_id: int, filters: ExportFilters, options: ExportOptions,
                       conversational: bool) -> Iterator[tuple[bytes, int]]:
    """(chunk of JSON lines, rows in it), read inside the caller's snapshot transaction."""
    statement, params = pairs_sql(project_id, filters, options, conversational)
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor, cursor.copy(statement, params) as copy:
        # In binary COPY a text value is its raw UTF-8 bytes; loading it as bytea skips decode + re-encode.
        copy.set_types(["bytea"])
        for (chunk,) in copy.rows():
            yield chunk, chunk.count(b"\n")
