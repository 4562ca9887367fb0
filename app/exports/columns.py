"""The columns of each export kind, as one Arrow schema: it fixes CSV headers and Parquet types alike."""

from __future__ import annotations

import pyarrow as pa

_MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def _text(conversational: bool) -> pa.DataType:
    return _MESSAGES if conversational else pa.string()


def schema_for(kind: str, conversational: bool, margin: bool = False) -> pa.Schema:
    """The schema of `kind`; prompts (and answers) are message lists when the export is conversational."""
    text = _text(conversational)
    if kind == "pairs":
        fields = [
            ("prompt", text), ("chosen", text), ("rejected", text), ("comparison_id", pa.int64()),
            ("prompt_id", pa.int64()), ("group_id", pa.int64()), ("annotator_id", pa.int64()),
            ("chosen_completion_id", pa.int64()), ("rejected_completion_id", pa.int64()),
            ("chosen_model_version_id", pa.int64()), ("rejected_model_version_id", pa.int64()),
            ("chosen_model_version_name", pa.string()), ("rejected_model_version_name", pa.string()),
            ("chosen_rank", pa.int32()), ("rejected_rank", pa.int32()), ("rank_gap", pa.int32()),
            ("source", pa.string()), ("labeler", pa.string()), ("weight", pa.float64()),
            ("created_at", pa.string()),
        ]
        if margin:
            fields.append(("margin", pa.float64()))
    elif kind == "rankings":
        fields = [
            ("ranking_id", pa.int64()), ("prompt_id", pa.int64()), ("prompt", text),
            ("completions", pa.list_(pa.string())), ("completion_ids", pa.list_(pa.int64())),
            ("model_version_ids", pa.list_(pa.int64())), ("model_version_names", pa.list_(pa.string())),
            ("ranks", pa.list_(pa.int32())), ("shown_order", pa.list_(pa.int64())), ("annotator_id", pa.int64()),
            ("flags", pa.string()), ("likert", pa.string()), ("rationale", pa.string()),
            ("not_rankable", pa.bool_()), ("wall_seconds", pa.float64()), ("active_seconds", pa.float64()),
            ("weight", pa.float64()), ("source", pa.string()), ("labeler", pa.string()),
            ("created_at", pa.string()),
        ]
    elif kind == "rm":
        fields = [
            ("prompt_id", pa.int64()), ("prompt", text), ("completion", pa.list_(pa.string())),
            ("ranking", pa.list_(pa.int32())),
        ]
    elif kind == "prompts":
        fields = [("prompt_id", pa.int64()), ("prompt", text)]
    elif kind == "sft":
        fields = [
            ("prompt_id", pa.int64()), ("prompt", text), ("completion", text), ("ranking_id", pa.int64()),
            ("annotator_id", pa.int64()), ("created_at", pa.string()), ("demonstration_id", pa.int64()),
            ("source", pa.string()), ("labeler", pa.string()),
        ]
    elif kind == "consensus":
        fields = [
            ("prompt_id", pa.int64()), ("external_id", pa.string()), ("prompt", text),
            ("completions", pa.list_(pa.string())), ("completion_ids", pa.list_(pa.int64())),
            ("consensus_ranks", pa.list_(pa.int32())), ("bt_scores", pa.list_(pa.float64())),
            ("n_rankings", pa.int32()),
        ]
    else:
        raise ValueError(f"unknown export kind {kind!r}")
    return pa.schema(fields)
