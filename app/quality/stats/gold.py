"""Gold items: known partial orders, scoring rankings against them, generated degraded
completions, the deterministic injection schedule and flagging of annotators below a threshold.

Spec format (JSON): a list of constraints, each one of
  {"better": A, "worse": C}   A must rank strictly above C
  {"last": D}                 D must rank strictly below every other shown completion
  {"first": A}                A must rank strictly above every other shown completion
where A, C, D are completion ids (or letters, mapped to ids with `GoldSpec.map_ids`).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from app.quality.stats.records import Id, PairCounts, Ranks
from app.quality.stats.trust import wilson_interval


@dataclass(frozen=True)
class Constraint:
    """One gold constraint; `kind` is better/last/first. `worse` is set only for better."""

    kind: Literal["better", "last", "first"]
    item: Id
    worse: Id | None = None

    def to_dict(self) -> dict[str, Id]:
        if self.kind == "better":
            assert self.worse is not None
            return {"better": self.item, "worse": self.worse}
        return {self.kind: self.item}


@dataclass(frozen=True)
class GoldSpec:
    """The known partial order of one gold prompt."""

    prompt_id: Id
    constraints: tuple[Constraint, ...]

    @staticmethod
    def parse(prompt_id: Id, spec: Sequence[Mapping[str, Any]]) -> GoldSpec:
        """Validate a JSON constraint list; raises ValueError naming the bad entry."""
        out: list[Constraint] = []
        for i, c in enumerate(spec):
            keys = set(c) if isinstance(c, Mapping) else set()
            if keys == {"better", "worse"}:
                if c["better"] == c["worse"]:
                    raise ValueError(f"constraint {i}: 'better' and 'worse' are the same item")
                out.append(Constraint("better", c["better"], c["worse"]))
            elif keys in ({"last"}, {"first"}):
                kind: Literal["last", "first"] = "last" if "last" in keys else "first"
                out.append(Constraint(kind, c[kind]))
            else:
                raise ValueError(f"constraint {i}: expected {{better, worse}}, {{last}} or {{first}}, got {c!r}")
        if not out:
            raise ValueError("gold spec has no constraints")
        return GoldSpec(prompt_id, tuple(out))

    def to_list(self) -> list[dict[str, Id]]:
        return [c.to_dict() for c in self.constraints]

    def map_ids(self, mapping: Mapping[Id, Id]) -> GoldSpec:
        """Rename items (e.g. letters A, B, ... to completion ids); unknown names are kept."""

        def m(x: Id | None) -> Id | None:
            return None if x is None else mapping.get(x, x)

        return GoldSpec(
            self.prompt_id,
            tuple(Constraint(c.kind, m(c.item), m(c.worse)) for c in self.constraints),
        )


@dataclass(frozen=True)
class GoldScore:
    """Constraints satisfied out of those applicable to the ranking; `passed` if all were."""

    satisfied: int
    applicable: int

    @property
    def fraction(self) -> float | None:
        return self.satisfied / self.applicable if self.applicable else None

    @property
    def passed(self) -> bool | None:
        return None if not self.applicable else self.satisfied == self.applicable


def score_gold(ranks: Ranks, spec: GoldSpec) -> GoldScore:
    """Score one ranking against a gold spec.

    A constraint whose items were not all shown is not applicable (not counted). Ties fail:
    "A above C" means strictly above.
    """
    sat = app = 0
    for c in spec.constraints:
        if c.item not in ranks or (c.worse is not None and c.worse not in ranks):
            continue
        app += 1
        r = ranks[c.item]
        others = [v for k, v in ranks.items() if k != c.item]
        if c.kind == "better":
            assert c.worse is not None
            sat += r < ranks[c.worse]
        elif c.kind == "last":
            sat += all(r > v for v in others)
        else:
            sat += all(r < v for v in others)
    return GoldScore(sat, app)


# --- generated gold: degraded completions -------------------------------------------------

DegradeKind = Literal["truncate", "shuffle", "other_prompt"]


@dataclass(frozen=True)
class Degraded:
    """A degraded completion and the constraints saying it ranks below every original."""

    text: str
    kind: DegradeKind
    constraints: list[dict[str, Id]]


def _rng(seed: int | str, *parts: object) -> random.Random:
    # random.Random seeds str input through SHA-512, so this is stable across processes.
    return random.Random("|".join(str(p) for p in (seed, *parts)))


def degrade(
    text: str,
    kind: DegradeKind,
    seed: int | str,
    *,
    original_ids: Sequence[Id],
    degraded_id: Id,
    other_answers: Sequence[str] = (),
) -> Degraded:
    """Make a deliberately worse completion from `text`, deterministically from `seed`.

    truncate: keeps the first 25-50 % of the words and cuts mid-sentence; shuffle: the same words in
    a random order (guaranteed different when there are two distinct words); other_prompt: one of
    `other_answers` (answers to other prompts). Returns the text and the constraints
    [{"better": o, "worse": degraded_id} for each original o].
    """
    rng = _rng(seed, kind, text)
    words = text.split()
    if kind == "truncate":
        if len(words) < 2:
            raise ValueError("cannot truncate a completion of fewer than 2 words")
        keep = max(1, min(len(words) - 1, math.floor(len(words) * rng.uniform(0.25, 0.5))))
        out = " ".join(words[:keep])
    elif kind == "shuffle":
        if len(set(words)) < 2:
            raise ValueError("cannot shuffle a completion with fewer than 2 distinct words")
        shuffled = words[:]
        while shuffled == words:
            rng.shuffle(shuffled)
        out = " ".join(shuffled)
    elif kind == "other_prompt":
        pool = [a for a in other_answers if a.strip() and a != text]
        if not pool:
            raise ValueError("other_prompt needs at least one answer to another prompt")
        out = rng.choice(pool)
    else:
        raise ValueError(f"unknown degradation {kind!r}")
    return Degraded(out, kind, [{"better": o, "worse": degraded_id} for o in original_ids])


# --- injection schedule ----------------------------------------------------------------------


def _unit(seed: int | str, *parts: object) -> float:
    h = hashlib.sha256("|".join(str(p) for p in (seed, *parts)).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


_NEVER = 2**62
"""A task number no annotator reaches: where a block starts when b / rate is too large for a float to hold."""


def _block_start(b: int, rate: float) -> int:
    # The epsilon keeps e.g. 3 / 0.1 = 30.000000000000004 in block 3, not 31. A tiny rate (1e-320) makes
    # b / rate infinite, and ceil(inf) an OverflowError: such a block simply starts beyond any task.
    start = b / rate - 1e-9
    return math.ceil(start) if abs(start) < _NEVER else int(math.copysign(_NEVER, start))


def should_inject_gold(rate: float, annotator_id: Id, task_counter: int, seed: int | str = 0) -> bool:
    """Whether the annotator's `task_counter`-th task (0-based) should be a gold item.

    Jittered stratification: the task line is cut into consecutive integer blocks of length
    about 1/rate (block b = [ceil(b / rate), ceil((b + 1) / rate))), and each block holds exactly one
    gold task at an offset drawn from a hash of (seed, annotator, b). So after any n tasks an
    annotator has seen rate * n gold items, within one, yet the positions are unpredictable and
    differ between annotators.
    """
    if not rate > 0:  # NaN included
        return False
    if rate >= 1:
        return True
    base = math.floor(task_counter * rate)
    for b in (base - 1, base, base + 1):
        start, end = _block_start(b, rate), _block_start(b + 1, rate)
        if b >= 0 and start <= task_counter < end:
            return task_counter == start + math.floor(_unit(seed, annotator_id, b) * (end - start))
    return False


# --- flagging ------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoldFlag:
    """An annotator's gold accuracy (constraint level) with a 95 % Wilson interval."""

    annotator_id: Id
    accuracy: float | None
    n_constraints: int
    n_items: int
    ci_low: float | None
    ci_high: float | None
    flagged: bool


def flag_annotators(
    scores: Mapping[Id, Iterable[GoldScore]], threshold: float = 0.7, min_items: int = 5
) -> list[GoldFlag]:
    """Flag annotators whose gold accuracy is below `threshold` once they have done `min_items`
    gold items (fewer items are reported but never flagged: too little evidence)."""
    out = []
    for ann, ss in scores.items():
        items = [s for s in ss if s.applicable]
        counts = PairCounts(sum(s.satisfied for s in items), sum(s.applicable for s in items))
        lo, hi = wilson_interval(counts.agree, counts.total)
        acc = counts.rate
        flagged = len(items) >= min_items and acc is not None and acc < threshold
        out.append(GoldFlag(ann, acc, int(counts.total), len(items), lo, hi, flagged))
    return out
