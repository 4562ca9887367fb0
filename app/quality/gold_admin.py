"""Gold items in the database: mark a prompt gold with a partial-order spec, unmark it, generate gold
items from existing prompts (a degraded completion added to copies of the originals), and an
annotator's live gold record (for flagging and pausing).

Design (docs/quality.md, "Gold items and slots"): gold prompts have no slots. They are handed out by
the quality picker (app.quality.picker) as slot-less assignments, any number of annotators may rank
them, and they never count towards a prompt's N, so the slot invariants (exactly N slot rows per
regular prompt, one claim per slot) are untouched. Marking a prompt gold removes its free slots;
slots already leased or done stay (their rankings were asked for as regular work). Never commits.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from typing import Any, cast, get_args

from sqlalchemy.orm import Session

from app.labeling.slots import ensure_slots
from app.models import Completion, Project, Prompt, utcnow
from app.projects.service import settings_of
from app.quality import queries, service
from app.quality.stats.gold import (
    DegradeKind,
    GoldFlag,
    GoldScore,
    GoldSpec,
    degrade,
    flag_annotators,
    score_gold,
)
from app.quality.stats.records import Id

DEGRADE_KINDS: tuple[str, ...] = get_args(DegradeKind)


class GoldError(ValueError):
    """A gold request that cannot be honoured; the message names the problem."""


def _letters(completions: Sequence[Completion]) -> dict[str, int]:
    return {chr(ord("A") + i): c.id for i, c in enumerate(completions)}


def normalise_spec(raw: Any, completions: Sequence[Completion]) -> list[dict[str, int]]:
    """Validate a spec (a constraint list, or {"constraints": [...]}) against the prompt's completions.

    Items may be completion ids or letters (A = the first completion by position). Returns the
    constraints over completion ids; raises GoldError naming the bad entry.
    """
    constraints = raw.get("constraints") if isinstance(raw, Mapping) else raw
    if not isinstance(constraints, list):
        raise GoldError("gold spec: expected a list of constraints or {\"constraints\": [...]}")
    letters: dict[Id, Id] = {k: v for k, v in _letters(completions).items()}
    ids = {c.id for c in completions}
    try:
        spec = GoldSpec.parse(0, constraints).map_ids(letters)
    except ValueError as exc:
        raise GoldError(f"gold spec: {exc}") from exc
    for i, c in enumerate(spec.constraints):
        for item in (c.item, c.worse):
            if item is None:
                continue
            key = int(item) if isinstance(item, str) and item.isdigit() else item
            if key not in ids:
                raise GoldError(f"gold spec: constraint {i} names {item!r}, which is not a completion of this prompt "
                                f"(use letters A-{chr(ord('A') + len(completions) - 1)} or completion ids)")
    out = []
    for c in spec.constraints:
        d = c.to_dict()
        out.append({k: int(cast(int | str, v)) for k, v in d.items()})
    return out


def mark_gold(db: Session, prompt: Prompt, raw_spec: Any) -> Prompt:
    """Make `prompt` a gold item with the given spec (replacing an earlier spec)."""
    completions = queries.completions_of(db, [prompt.id])[prompt.id]
    if len(completions) < 2:
        raise GoldError(f"prompt {prompt.id} has {len(completions)} completion(s); a gold item needs at least 2")
    prompt.gold_spec = {"constraints": normalise_spec(raw_spec, completions)}
    prompt.is_gold = True
    queries.delete_free_slots(db, prompt.id, utcnow())
    db.flush()
    service.invalidate(prompt.project_id)
    return prompt


def unmark_gold(db: Session, project: Project, prompt: Prompt) -> Prompt:
    """Make a gold prompt regular again; it gets its N slots back (gold rankings do not fill them)."""
    prompt.is_gold = False
    prompt.gold_spec = None
    db.flush()
    ensure_slots(db, project, [prompt.id])
    service.invalidate(project.id)
    return prompt


def gold_prompts(db: Session, project_id: int) -> list[Prompt]:
    """The project's gold prompts, by id (the gold page)."""
    return queries.gold_prompts(db, project_id)


def generate_gold(
    db: Session, project: Project, count: int, kinds: Sequence[str] = DEGRADE_KINDS, seed: int = 0
) -> list[Prompt]:
    """Create up to `count` gold items from existing prompts.

    Each copies a source prompt and up to k_max - 1 of its completions, and adds one degraded
    completion (truncated, shuffled words, or another prompt's answer, cycling through `kinds`) with
    the spec "every original ranks above the degraded one". Deterministic from `seed`; a source
    already used with the same kind and seed is skipped, so repeated calls add new items, never copies.
    """
    bad = [k for k in kinds if k not in DEGRADE_KINDS]
    if bad or not kinds:
        raise GoldError(f"unknown degradation(s) {bad or kinds}; choose from {', '.join(DEGRADE_KINDS)}")
    if count < 1:
        raise GoldError("count must be at least 1")
    originals_wanted = max(1, min(project.k_max, 16) - 1)
    need = max(1, (2 if project.allow_fewer_than_k_min else project.k_min) - 1)
    sources = queries.gold_sources(db, project.id, need)
    if not sources:
        raise GoldError(f"no regular prompt has the {need} completion(s) a gold item is built from")
    rng = random.Random(f"gold|{project.id}|{seed}")
    rng.shuffle(sources)
    comps = queries.completions_of(db, [p.id for p in sources])
    existing = queries.generated_gold_ids(db, project.id)
    created: list[Prompt] = []
    for i, src in enumerate(sources):
        if len(created) >= count:
            break
        originals = comps[src.id][:originals_wanted]
        others = [c.text for pid, cs in comps.items() if pid != src.id for c in cs]
        for kind in [kinds[(i + j) % len(kinds)] for j in range(len(kinds))]:
            external_id = f"gold-{kind}-{src.id}-{seed}"
            if external_id in existing:
                break
            try:
                base = rng.choice(originals).text
                made = degrade(base, kind, f"{seed}|{src.id}", original_ids=[c.id for c in originals],  # type: ignore[arg-type]
                               degraded_id=-1, other_answers=rng.sample(others, min(20, len(others))))
            except ValueError:
                continue
            created.append(_create_item(db, project, src, originals, made.text, kind, external_id, rng))
            break
    service.invalidate(project.id)
    return created


def _create_item(db: Session, project: Project, src: Prompt, originals: Sequence[Completion], degraded_text: str,
                 kind: str, external_id: str, rng: random.Random) -> Prompt:
    prompt = Prompt(
        project_id=project.id, external_id=external_id, text=src.text, messages=src.messages, system=src.system,
        meta={"gold": {"source_prompt_id": src.id, "degradation": kind}},
        content_hash=hashlib.sha256(external_id.encode()).hexdigest(), is_gold=True,
    )
    db.add(prompt)
    db.flush()
    positions = list(range(len(originals) + 1))
    rng.shuffle(positions)
    copies = [Completion(prompt_id=prompt.id, position=positions[k], text=c.text, source=c.source,
                         model_name=c.model_name, model_version_id=c.model_version_id, round=c.round,
                         meta={"gold_copy_of": c.id}) for k, c in enumerate(originals)]
    worse = Completion(prompt_id=prompt.id, position=positions[-1], text=degraded_text, source="uploaded",
                       model_name=None, meta={"gold_degraded": kind})
    db.add_all([*copies, worse])
    db.flush()
    prompt.gold_spec = {"constraints": [{"better": c.id, "worse": worse.id} for c in copies]}
    db.flush()
    return prompt


def annotator_gold_flag(db: Session, project: Project, annotator_id: int) -> GoldFlag | None:
    """The annotator's gold accuracy and flag in this project (None before any gold item)."""
    scores: list[GoldScore] = []
    for ranks, spec in queries.annotator_gold_rankings(db, project.id, annotator_id):
        constraints = (spec or {}).get("constraints") or []
        if constraints:
            scores.append(score_gold(ranks, GoldSpec.parse(0, constraints)))
    if not scores:
        return None
    threshold = settings_of(project).quality.gold_threshold
    return flag_annotators({annotator_id: scores}, threshold, service.GOLD_MIN_ITEMS)[0]


def is_paused(db: Session, project: Project, annotator_id: int) -> bool:
    """Whether the annotator's labeling in the project is paused: pausing is on and they are flagged."""
    if not settings_of(project).quality.pause_below_threshold:
        return False
    flag = annotator_gold_flag(db, project, annotator_id)
    return bool(flag and flag.flagged)


def find_prompt(db: Session, prompt_id: int) -> Prompt | None:
    """A prompt by id (any project), or None."""
    return queries.prompt(db, prompt_id)


def completions_of(db: Session, prompt_ids: Sequence[int]) -> dict[int, list[Completion]]:
    """The completions of each gold prompt, for the gold page."""
    return queries.completions_of(db, prompt_ids)
