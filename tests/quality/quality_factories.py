"""Plain factory functions for quality-control tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import count

import numpy as np

from app.quality.stats.records import RankingRecord

_ids = count()


def ranking(
    prompt: object,
    annotator: object,
    order: Sequence[object] | dict[object, int],
    *,
    shown: Sequence[object] | None = None,
    lengths: dict[object, int] | None = None,
    seconds: float | None = 30.0,
    is_ai: bool = False,
    model_of: dict[object, str] | None = None,
    created_at: datetime | None = None,
) -> RankingRecord:
    """A ranking from a best-first order (strict) or an explicit {completion: rank} dict."""
    ranks = dict(order) if isinstance(order, dict) else {c: i + 1 for i, c in enumerate(order)}
    return RankingRecord(
        ranking_id=f"r{next(_ids)}",
        prompt_id=prompt,
        annotator_id=annotator,
        ranks=ranks,
        shown_order=list(shown) if shown is not None else list(ranks),
        lengths=lengths,
        seconds=seconds,
        is_ai=is_ai,
        model_of=model_of,
        created_at=created_at,
    )


def simulated_rankings(
    n_prompts: int,
    k: int,
    annotators: dict[str, float],
    seed: int = 0,
) -> list[RankingRecord]:
    """Every annotator ranks every prompt; items c0..c{k-1} have true utility k - index.

    `annotators` maps id -> noise scale (Gumbel noise added to the utilities; inf = random order).
    The shown order is a random permutation.
    """
    rng = np.random.default_rng(seed)
    out = []
    for p in range(n_prompts):
        items = [f"p{p}c{i}" for i in range(k)]
        utility = np.arange(k, 0, -1, dtype=float)
        for ann, noise in annotators.items():
            u = rng.permutation(k).astype(float) if np.isinf(noise) else utility + noise * rng.gumbel(size=k)
            order = [items[i] for i in np.argsort(-u)]
            shown = [items[i] for i in rng.permutation(k)]
            out.append(ranking(f"p{p}", ann, order, shown=shown))
    return out
