"""How the cost of claiming the next task grows with the pool: the claim as shipped against the previous one.

For each pool size a fresh Postgres database gets one project of P prompts (K=4 completions each, N=3 slots),
inserted in bulk and *not* analysed (the state right after an import), then several annotators each work
through --history tasks and the next --claims claims of one of them are timed, in process, through the real
service (`app.labeling.assignment.next_task`: lock, live check, expiry, claim, assignment row). Each claimed
task is finished at once (assignment submitted, slot done) so the annotator keeps moving through the pool.

Two claim orders, each on its own database of the same shape:
- `index` (shipped): `slots.priority DESC` alone, the order of the (project, status, priority) index, open
  slots first: the search stops at the first free slot.
- `random` (before): `priority DESC, random()`: every claim sorts every free slot.

    .venv/bin/python bench/claim.py --quick            # pools 100 and 20,000; about a minute
    .venv/bin/python bench/claim.py --pools 100,2000,100000 --analyze

Ends with one JSON line: per order and pool, next-task p50/p99 in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import fresh_database, pct  # noqa: E402
from sqlalchemy import ColumnElement, func, text  # noqa: E402

from app.auth import service as auth  # noqa: E402
from app.db import create_db_engine, make_session_factory, unit_of_work  # noqa: E402
from app.labeling import assignment  # noqa: E402
from app.labeling.selection import DefaultPicker, use_picker  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from app.models import Project, Slot  # noqa: E402
from app.projects import service as projects  # noqa: E402
from app.projects.schemas import ProjectCreate  # noqa: E402


class RandomTiebreak(DefaultPicker):
    """The claim order before this change: highest priority first, ties at random."""

    def order_by(self, project: Project) -> tuple[ColumnElement[Any], ...]:
        return (Slot.priority.desc(), func.random())


def _seed(url: str, pool: int, annotators: int) -> tuple[int, list[int]]:
    upgrade(url)
    engine = create_db_engine(url)
    try:
        with unit_of_work(make_session_factory(engine)) as db:
            project = projects.create(db, ProjectCreate(name="claim bench", k_min=4, k_max=4,
                                                        annotations_per_prompt=3), None)
            users = [auth.create_user(db, f"claim{i}@example.org", "annotator", password="bench password 1").user
                     for i in range(annotators)]
            project_id, user_ids = project.id, [u.id for u in users]
            params = {"p": project_id, "n": pool}
            db.execute(text(
                "INSERT INTO prompts (project_id, external_id, text, content_hash, metadata, is_gold, priority, "
                "created_at) SELECT :p, 'b' || g, 'Prompt number ' || g, md5(g::text), '{}', false, 0, now() "
                "FROM generate_series(1, :n) g"), params)
            db.execute(text(
                "INSERT INTO completions (prompt_id, position, text, source, round, metadata, created_at) "
                "SELECT p.id, j, 'Answer ' || j || ' to ' || p.id, 'uploaded', 0, '{}', now() "
                "FROM prompts p CROSS JOIN generate_series(0, 3) j WHERE p.project_id = :p"), params)
            db.execute(text(
                "INSERT INTO slots (project_id, prompt_id, round, slot_index, status, priority, created_at) "
                "SELECT :p, p.id, 0, i, 'open', 0, now() FROM prompts p CROSS JOIN generate_series(0, 2) i "
                "WHERE p.project_id = :p"), params)
    finally:
        engine.dispose()
    return project_id, user_ids


def _finish(db: Any, assignment_id: int, slot_id: int | None) -> None:
    db.execute(text("UPDATE assignments SET status = 'submitted', finished_at = now() WHERE id = :a"),
               {"a": assignment_id})
    if slot_id is not None:
        db.execute(text("UPDATE slots SET status = 'done' WHERE id = :s"), {"s": slot_id})


def _run(url: str, project_id: int, user_ids: list[int], history: int, claims: int, analyze: bool) -> list[float]:
    engine = create_db_engine(url)
    factory = make_session_factory(engine)
    try:
        if analyze:
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
        timed: list[float] = []
        for turn in range(history + claims):
            for user_id in user_ids if turn < history else user_ids[:1]:
                with unit_of_work(factory) as db:
                    project = db.get(Project, project_id)
                    user = auth.get_user(db, user_id)
                    assert project is not None and user is not None
                    started = time.perf_counter()
                    task = assignment.next_task(db, project, user)
                    elapsed = time.perf_counter() - started
                    if task is None:
                        return timed
                    _finish(db, task.id, task.slot_id)
                if turn >= history:
                    timed.append(elapsed * 1000)
        return timed
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pools", default="100,2000,20000", help="comma-separated pool sizes (prompts)")
    parser.add_argument("--annotators", type=int, default=5)
    parser.add_argument("--history", type=int, default=60, help="tasks each annotator finishes before timing")
    parser.add_argument("--claims", type=int, default=100, help="timed claims")
    parser.add_argument("--analyze", action="store_true", help="ANALYZE before timing (fresh statistics)")
    parser.add_argument("--orders", default="index,random", help="which claim orders to run (index, random)")
    parser.add_argument("--quick", action="store_true", help="pools 100 and 20,000, shorter history")
    args = parser.parse_args()
    pools = [100, 20_000] if args.quick else [int(p) for p in args.pools.split(",")]
    history, claims = (30, 60) if args.quick else (args.history, args.claims)
    results: dict[str, dict[str, dict[str, float]]] = {o: {} for o in args.orders.split(",")}
    print(f"{'order':<8}{'pool':>10}{'p50 ms':>10}{'p99 ms':>10}  (annotators {args.annotators}, history "
          f"{history} each, {claims} timed claims, statistics {'fresh' if args.analyze else 'none'})")
    for pool in pools:
        for order, picker in (("index", None), ("random", RandomTiebreak())):
            if order not in args.orders.split(","):
                continue
            with fresh_database() as url:
                project_id, user_ids = _seed(url, pool, args.annotators)
                use_picker(picker)
                try:
                    timed = _run(url, project_id, user_ids, history, claims, args.analyze)
                finally:
                    use_picker(None)
            p50, p99 = pct(timed, 0.5), pct(timed, 0.99)
            results[order][str(pool)] = {"p50_ms": round(p50, 2), "p99_ms": round(p99, 2), "claims": len(timed)}
            print(f"{order:<8}{pool:>10}{p50:>10.2f}{p99:>10.2f}", flush=True)
    for order, by_pool in results.items():
        sizes = sorted(by_pool, key=int)
        if len(sizes) > 1:
            growth = by_pool[sizes[-1]]["p50_ms"] / max(by_pool[sizes[0]]["p50_ms"], 1e-9)
            print(f"{order}: p50 at {int(sizes[-1]):,} prompts is {growth:.2f}x its p50 at {int(sizes[0]):,}")
    print(json.dumps({"bench": "claim", "analyze": args.analyze, "results": results}))


if __name__ == "__main__":
    main()
