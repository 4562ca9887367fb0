"""The Postgres fast path of the `pairs` and `rankings` exports: Postgres builds each JSON line and streams
it with COPY.

Building rows in Python costs more than fetching them (driver decoding, JSON encoding, timestamp
formatting); here the server does all of it and Python only moves bytes, which keeps the export close
to `psql \\copy` speed (bench/export.py). The lines carry the same keys and values as the generic path
(`app.exports.rows.pairs`, `rows.rankings`); only insignificant JSON spacing and key order inside messages
differ, and a test checks the two paths agree row by row (and write the same Parquet file).

Lines travel in binary COPY (no escaping to undo), a thousand per message, so Python's per-row work is nil.
Parquet is made from the same lines: Arrow's JSON reader parses them into record batches of the export's
schema (C++, no Python objects per row), cut into the row groups the generic path writes.
"""

# ruff: noqa: S608 - only this module's constant SQL fragments are interpolated; values are bound parameters.
from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.json as pa_json
from sqlalchemy import Connection

from app.exports.provenance import labeler_sql
from app.exports.schemas import ExportFilters, ExportOptions

ROWS_PER_CHUNK = 1000
FAST_KINDS = ("pairs", "rankings")

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


def _float(column: str) -> str:
    """A float as Python writes it: with a decimal point (1.0), so readers infer the same column type."""
    return f"(CASE WHEN {column} = trunc({column}) THEN to_json({column}::numeric(30, 1)) ELSE to_json({column}) END)::text"


_WEIGHT = _float("c.weight")


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
        ("weight", _WEIGHT),
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
    if filters.trained_version_id is not None:
        where.append("EXISTS (SELECT 1 FROM model_version_comparisons mvc "
                     "WHERE mvc.model_version_id = %(trained)s AND mvc.comparison_id = c.id)")
        params["trained"] = filters.trained_version_id
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


def _stored_json(column: str) -> str:
    """A JSON column's stored text as a JSON string (`{}` for null), as `rows.stored_json` gives it."""
    return f"to_json(CASE WHEN {column} IS NULL OR {column}::text = 'null' THEN '{{}}' ELSE {column}::text END)::text"


def rankings_sql(project_id: int, filters: ExportFilters, conversational: bool) -> tuple[str, dict[str, Any]]:
    """The COPY statement of the `rankings` lines: each ranking with its shown completions (those that still
    exist, in shown order) gathered by a lateral subquery, as `rows.rankings` builds them."""
    fields = [
        ("ranking_id", "r.id::text"),
        ("prompt_id", "r.prompt_id::text"),
        ("prompt", f"({_CHAT_PROMPT})::text" if conversational else f"to_json({_PLAIN_PROMPT})::text"),
        ("completions", "coalesce(s.texts::text, '[]')"),
        ("completion_ids", "coalesce(s.ids::text, '[]')"),
        ("model_version_ids", "coalesce(s.versions::text, '[]')"),
        ("model_version_names", "coalesce(s.names::text, '[]')"),
        ("ranks", "coalesce(s.ranks::text, '[]')"),
        ("shown_order", "r.shown_order::text"),
        ("annotator_id", "r.annotator_id::text"),
        ("flags", _stored_json("r.flags")),
        ("likert", _stored_json("r.likert")),
        ("rationale", "to_json(coalesce(r.rationale, ''))::text"),
        ("not_rankable", "CASE WHEN r.not_rankable THEN 'true' ELSE 'false' END"),
        ("wall_seconds", _float("r.wall_seconds")),
        ("active_seconds", _float("r.active_seconds")),
        ("weight", _float("r.weight")),
        ("source", "to_json(r.source)::text"),
        ("labeler", labeler_sql("r.source", "r.client_info")),
        ("created_at", _TIMESTAMP.format(column="r.created_at")),
    ]
    where = ["r.project_id = %(project_id)s"]
    params: dict[str, Any] = {"project_id": project_id}
    if filters.since is not None:
        where.append("r.created_at >= %(since)s")
        params["since"] = filters.since
    if filters.annotator_id is not None:
        where.append("r.annotator_id = %(annotator_id)s")
        params["annotator_id"] = filters.annotator_id
    if filters.humans_only:
        where.append("r.source <> 'ai'")
    if filters.model_version_id is not None:  # every shown completion sampled by it (vacuously true for none)
        where.append("coalesce(s.one_version, true)")
        params["version"] = filters.model_version_id
    if filters.trained_version_id is not None:
        where.append("EXISTS (SELECT 1 FROM model_version_comparisons mvc JOIN comparisons tc ON tc.id = "
                     "mvc.comparison_id WHERE mvc.model_version_id = %(trained)s AND tc.ranking_id = r.id)")
        params["trained"] = filters.trained_version_id
    one_version = ("bool_and(x.model_version_id IS NOT DISTINCT FROM %(version)s)"
                   if filters.model_version_id is not None else "NULL::boolean")
    query = (
        f"SELECT string_agg({_json_object(fields)}, E'\\n' ORDER BY r.id) || E'\\n' "
        "FROM rankings r "
        "JOIN prompts p ON p.id = r.prompt_id "
        "CROSS JOIN LATERAL (SELECT json_agg(x.text ORDER BY o.n) AS texts, json_agg(x.id ORDER BY o.n) AS ids, "
        "json_agg(x.model_version_id ORDER BY o.n) AS versions, json_agg(v.name ORDER BY o.n) AS names, "
        "json_agg(r.ranks -> x.id::text ORDER BY o.n) AS ranks, "
        f"{one_version} AS one_version "
        "FROM json_array_elements_text(r.shown_order) WITH ORDINALITY AS o(id, n) "
        "JOIN completions x ON x.id = o.id::bigint "
        "LEFT JOIN model_versions v ON v.id = x.model_version_id) s "
        f"WHERE {' AND '.join(where)} "
        f"GROUP BY r.id / {ROWS_PER_CHUNK} ORDER BY r.id / {ROWS_PER_CHUNK}"
    )
    return f"COPY ({query}) TO STDOUT (FORMAT BINARY)", params


def stream_jsonl(conn: Connection, kind: str, project_id: int, filters: ExportFilters, options: ExportOptions,
                 conversational: bool) -> Iterator[tuple[bytes, int]]:
    """(chunk of JSON lines, rows in it) of `kind` (one of FAST_KINDS), read inside the caller's snapshot."""
    if kind == "pairs":
        statement, params = pairs_sql(project_id, filters, options, conversational)
    else:
        statement, params = rankings_sql(project_id, filters, conversational)
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor:
        # The planner's guess of a lateral's rows prices the rankings query high enough to JIT-compile it,
        # which takes longer than running it (seconds, bench/export.py). Only this snapshot transaction.
        cursor.execute("SET LOCAL jit = off")
        with cursor.copy(statement, params) as copy:
            # In binary COPY a text value is its raw UTF-8 bytes; loading it as bytea skips decode + re-encode.
            copy.set_types(["bytea"])
            for (chunk,) in copy.rows():
                yield chunk, chunk.count(b"\n")


def stream_tables(conn: Connection, kind: str, project_id: int, filters: ExportFilters, options: ExportOptions,
                  conversational: bool, schema: pa.Schema, rows_per_table: int) -> Iterator[pa.Table]:
    """The same rows as Arrow tables of exactly `rows_per_table` rows (the last one may be shorter): the
    generic path's row groups, so both paths write the same Parquet file."""
    parse = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    held: list[pa.Table] = []  # parsed rows not yet written, fewer than rows_per_table
    held_rows = 0
    raw: list[bytes] = []
    raw_rows = 0
    for chunk, rows in stream_jsonl(conn, kind, project_id, filters, options, conversational):
        raw.append(chunk)
        raw_rows += rows
        if held_rows + raw_rows < rows_per_table:
            continue
        table = pa.concat_tables([*held, _parse(b"".join(raw), parse, schema)])
        raw, raw_rows = [], 0
        while table.num_rows >= rows_per_table:
            yield table.slice(0, rows_per_table).combine_chunks()
            table = table.slice(rows_per_table)
        held, held_rows = [table], table.num_rows
    if raw:
        held.append(_parse(b"".join(raw), parse, schema))
    if held:
        table = pa.concat_tables(held)
        if table.num_rows:
            yield table.combine_chunks()


def _parse(lines: bytes, parse: pa_json.ParseOptions, schema: pa.Schema) -> pa.Table:
    # One block for the whole buffer: a block boundary inside a long line would fail the read.
    read = pa_json.ReadOptions(block_size=len(lines) + 1, use_threads=False)
    return pa_json.read_json(io.BytesIO(lines), read_options=read, parse_options=parse).select(schema.names)
