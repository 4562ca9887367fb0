"""Progress numbers: the annotator's counters on the ranking page and the admin progress page's tables."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.labeling import queries
from app.models import Comparison, Project, utcnow


def annotator_progress(
    db: Session, project: Project, user_id: int, now: datetime | None = None
) -> dict[str, int]:
    """Rankings by this annotator today and in total, and the project's done/target slot counts."""
    now = now or utcnow()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today, mine = queries.annotator_ranking_counts(db, project.id, user_id, midnight)
    done, target = queries.slot_counts(db, project.id)
    return {"today": today, "mine": mine, "done": done, "target": target}


@dataclass
class ProjectProgress:
    """Everything the admin progress page shows."""

    needing: int = 0
    in_progress: int = 0
    done: int = 0
    slots_done: int = 0
    slots_total: int = 0
    annotators: list[dict[str, Any]] = field(default_factory=list)
    recent: list[dict[str, Any]] = field(default_factory=list)
    per_day: list[tuple[str, int]] = field(default_factory=list)


def project_progress(db: Session, project: Project, days: int = 30, recent: int = 10) -> ProjectProgress:
    """Prompt states, per-annotator counts and median time, recent rankings with pairs, rankings per day."""
    now = utcnow()
    out = ProjectProgress()
    out.needing, out.in_progress, out.done = queries.prompt_states(db, project.id, now)
    info = annotator_progress(db, project, 0, now)
    out.slots_done, out.slots_total = info["done"], info["target"]
    times: dict[int, list[float]] = defaultdict(list)
    counts: Counter[int] = Counter()
    for annotator_id, wall in queries.human_ranking_times(db, project.id):
        if annotator_id is None:
            continue
        counts[annotator_id] += 1
        if wall is not None:
            times[annotator_id].append(float(wall))
    names = queries.display_names(db, list(counts))
    out.annotators = [
        {
            "name": names.get(uid, f"user {uid}"),
            "rankings": n,
            "median_seconds": statistics.median(times[uid]) if times[uid] else None,
        }
        for uid, n in counts.most_common()
    ]
    latest = queries.latest_rankings(db, project.id, recent)
    pairs: dict[int, list[Comparison]] = defaultdict(list)
    if latest:
        for comparison in queries.comparisons_of(db, [r.id for r in latest]):
            pairs[comparison.ranking_id or 0].append(comparison)
    out.recent = [
        {"ranking": r, "annotator": names.get(r.annotator_id or 0, "—"), "pairs": pairs[r.id]} for r in latest
    ]
    since = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    day_counts: Counter[str] = Counter(
        created.date().isoformat() for created in queries.ranking_times_since(db, project.id, since)
    )
    out.per_day = [
        (
            (since + timedelta(days=i)).date().isoformat(),
            day_counts[(since + timedelta(days=i)).date().isoformat()],
        )
        for i in range(days)
    ]
    return out


def bar_chart(per_day: list[tuple[str, int]], width: int = 600, height: int = 160) -> dict[str, Any]:
    """Geometry for the server-side SVG bar chart (rendered by the template with attributes only)."""
    top = max((n for _, n in per_day), default=0) or 1
    slot = width / max(len(per_day), 1)
    bars = []
    for i, (day, n) in enumerate(per_day):
        h = round((height - 20) * n / top, 1)
        bars.append(
            {
                "x": round(i * slot + 1, 1),
                "y": round(height - 16 - h, 1),
                "w": round(max(slot - 2, 1), 1),
                "h": h,
                "day": day,
                "n": n,
            }
        )
    return {"width": width, "height": height, "bars": bars, "top": top}
