"""Who labelled a row, in one word an export reader can filter on: `labeler`.

- `human`: an annotator ranked it here;
- `llm-judge:<model>`: the AI annotator with a chat model as judge (RLAIF data);
- `reward-model`: the AI annotator ranking by a reward model's scores;
- `ai`: another automated ranker;
- `imported` or `imported:<tool>` (label-studio, argilla, openai, prefloop…): read from a file; such labels
  are human or not as their source was.

The generic row path computes it here; the Postgres COPY path (pg_copy.py) computes the same in SQL.
"""

from __future__ import annotations

from typing import Any

from app.registry.datasets import LLM_JUDGE_RANKER, REWARD_MODEL_RANKER


def labeler(source: str | None, client_info: dict[str, Any] | None) -> str:
    """The `labeler` of a ranking from its `source` and `client_info`."""
    info = client_info if isinstance(client_info, dict) else {}
    if source == "ai":
        ranker = info.get("ranker")
        if ranker == REWARD_MODEL_RANKER:
            return "reward-model"
        if ranker == LLM_JUDGE_RANKER:
            return f"llm-judge:{info.get('model') or 'unknown'}"
        return "ai"
    if source == "imported":
        imported = info.get("imported")
        tool = imported.get("tool") if isinstance(imported, dict) else None
        return f"imported:{tool}" if isinstance(tool, str) and tool else "imported"
    return "human"


def labeler_sql(source: str, client_info: str) -> str:
    """The same as `labeler`, as a Postgres expression over the ranking's columns (JSON text of a label)."""
    return (
        f"to_json(CASE WHEN {source} = 'ai' THEN CASE {client_info}->>'ranker' "
        f"WHEN '{REWARD_MODEL_RANKER}' THEN 'reward-model' "
        f"WHEN '{LLM_JUDGE_RANKER}' THEN 'llm-judge:' || coalesce({client_info}->>'model', 'unknown') "
        f"ELSE 'ai' END "
        f"WHEN {source} = 'imported' THEN 'imported' || coalesce(':' || nullif({client_info}->'imported'->>'tool', ''), '') "
        f"ELSE 'human' END)::text"
    )
