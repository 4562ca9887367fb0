"""Turning the ranking page's form fields into a `RankingIn` (rank_<id>, flag_<id>, likert_<id>, preference, ...)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError
from starlette.datastructures import FormData

from app.labeling.errors import Invalid
from app.labeling.schemas import RankingIn


def _number(form: FormData, name: str) -> float | None:
    value = form.get(name)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # timings are advisory; a garbled one is dropped, not fatal


PREFERENCE_SCALE = 3  # preference runs from -3 (A much better) through 0 (about the same) to 3 (B much better)


def _preference(form: FormData, shown: Sequence[int]) -> tuple[dict[int, int], int] | None:
    """The pairwise page's one choice as ranks and a strength (None when nothing was chosen)."""
    value = form.get("preference")
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        choice = int(value)
    except ValueError as exc:
        raise Invalid(f"preference must be a whole number ({exc})") from exc
    if len(shown) != 2 or not -PREFERENCE_SCALE <= choice <= PREFERENCE_SCALE:
        raise Invalid(f"preference: one of -{PREFERENCE_SCALE}…{PREFERENCE_SCALE} for a task of two answers")
    first, second = shown
    if choice == 0:
        return {first: 1, second: 1}, 0
    return ({first: 1, second: 2} if choice < 0 else {first: 2, second: 1}), abs(choice)


def ranking_from_form(form: FormData, shown: Sequence[int]) -> RankingIn:
    """Read the shown completions' fields only; anything malformed is an `Invalid` naming the field."""
    ranks: dict[int, int] = {}
    flags: dict[int, list[str]] = {}
    likert: dict[int, int] = {}
    try:
        for cid in shown:
            rank = form.get(f"rank_{cid}")
            if isinstance(rank, str) and rank:
                ranks[cid] = int(rank)
            chosen = [v for v in form.getlist(f"flag_{cid}") if isinstance(v, str)]
            if chosen:
                flags[cid] = chosen
            score = form.get(f"likert_{cid}")
            if isinstance(score, str) and score:
                likert[cid] = int(score)
    except ValueError as exc:
        raise Invalid(f"ranks/likert must be whole numbers ({exc})") from exc
    strength: int | None = None
    preferred = _preference(form, shown)
    if preferred is not None:
        ranks, strength = preferred
    text = form.get("rationale")
    demo = form.get("demonstration")
    try:
        return RankingIn(
            ranks=ranks,
            flags=flags,
            likert=likert,
            rationale=text if isinstance(text, str) else "",
            strength=strength,
            not_rankable=form.get("not_rankable") == "1",
            demonstration=demo if isinstance(demo, str) and demo.strip() else None,
            wall_seconds=min(_number(form, "wall_seconds") or 0.0, 7 * 86_400) or None,
            active_seconds=min(_number(form, "active_seconds") or 0.0, 7 * 86_400) or None,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise Invalid(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from exc
