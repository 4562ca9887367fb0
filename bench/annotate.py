"""Load benchmark of the ranking workflow over the real HTTP server and a fresh Postgres database.

Creates a database, migrates it, seeds a project from the shared TL;DR CSV (100 prompts x 12 samples),
starts uvicorn as a subprocess, then runs M simulated annotators (threads with httpx, staggered starts,
think time) against the JSON API until no task is left or the time runs out. Prints requests/s and
p50/p99 latency of next-task and submit, checks the database for lost, duplicated and over-collected
rankings, drops the database and ends with one JSON line.

`--pool 100,2000,100000` runs once per pool size instead, each on its own fresh database seeded in bulk
(INSERT ... SELECT from the TL;DR rows, not through the import), each stopping after `--tasks` submits, so
the per-pool latencies compare the same amount of work and show how they grow with the pool.

    .venv/bin/python bench/annotate.py --quick          # < 2 minutes
    .venv/bin/python bench/annotate.py --annotators 50 --copies 5 --seconds 600
    .venv/bin/python bench/annotate.py --pool 100,2000,100000 --annotators 10
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402
from harness import TLDR, check, fresh_database, pct, seed, start_server, stop_server  # noqa: E402

from app.auth import service as auth  # noqa: E402
from app.db import create_db_engine, make_session_factory, unit_of_work  # noqa: E402
from app.projects import service as projects  # noqa: E402
from app.projects.schemas import ProjectCreate  # noqa: E402


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next_ms: list[float] = []
        self.submit_ms: list[float] = []
        self.requests = 0
        self.errors: list[str] = []
        self.acknowledged: set[int] = set()
        self.task_limit: int | None = None  # stop taking new tasks once this many submits were acknowledged

    def enough(self) -> bool:
        with self.lock:
            return self.task_limit is not None and len(self.acknowledged) >= self.task_limit


def annotator(
    base: str,
    project_id: int,
    token: str,
    stats: Stats,
    deadline: float,
    seed_: int,
    think: float,
    start_delay: float,
) -> None:
    rng = random.Random(seed_)
    time.sleep(start_delay)  # staggered arrival, as real annotators log in over time
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        client.get("/api/projects")  # untimed: opens the connection and writes the token's last use
        while time.monotonic() < deadline and not stats.enough():
            t0 = time.perf_counter()
            response = client.get(f"/api/projects/{project_id}/tasks/next")
            elapsed = (time.perf_counter() - t0) * 1000
            with stats.lock:
                stats.requests += 1
                stats.next_ms.append(elapsed)
            if response.status_code == 204:
                return
            if response.status_code != 200:
                with stats.lock:
                    stats.errors.append(f"next {response.status_code}: {response.text[:200]}")
                return
            task = response.json()
            ids = [c["id"] for c in task["completions"]]
            ranks = {str(cid): rng.randint(1, len(ids)) for cid in ids}
            ranks[str(ids[0])], ranks[str(ids[1])] = 1, 2
            time.sleep(rng.uniform(0, think))  # reading and ranking
            body = {"ranks": ranks, "rationale": "bench", "wall_seconds": think}
            t0 = time.perf_counter()
            response = client.post(f"/api/assignments/{task['assignment_id']}/ranking", json=body)
            elapsed = (time.perf_counter() - t0) * 1000
            with stats.lock:
                stats.requests += 1
                stats.submit_ms.append(elapsed)
                if response.status_code == 200:
                    stats.acknowledged.add(task["assignment_id"])
                else:
                    stats.errors.append(f"submit {response.status_code}: {response.text[:200]}")


def seed_pool(url: str, prompts: int, annotators: int, n: int) -> tuple[int, list[str]]:
    """A project of `prompts` prompts (the 100 TL;DR contexts over and over, 12 samples each) with their
    slots, seeded in bulk: three INSERT ... SELECT statements, so 100k prompts take seconds, not an import.
    The project and the annotators' tokens go through the services. Returns (project id, tokens)."""
    contexts: dict[str, list[str]] = {}
    with TLDR.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            contexts.setdefault(row["context"], []).append(row["sample"])
    engine = create_db_engine(url)
    with unit_of_work(make_session_factory(engine)) as db:
        project = projects.create(
            db, ProjectCreate(name="bench pool", k_min=4, k_max=9, annotations_per_prompt=n), None
        )
        tokens = [
            auth.create_api_token(
                db, auth.create_user(db, f"bench{a}@example.org", "annotator", password="bench password 123").user
            )
            for a in range(annotators)
        ]
        project_id = project.id
    engine.dispose()
    texts = list(contexts)
    samples = [(i, j, sample) for i, text in enumerate(texts) for j, sample in enumerate(contexts[text])]
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TEMP TABLE base_samples (base int, position int, text text)")
        with conn.cursor().copy("COPY base_samples (base, position, text) FROM STDIN") as copy:
            for row in samples:
                copy.write_row(row)
        conn.execute(
            "INSERT INTO prompts (project_id, external_id, text, metadata, content_hash, is_gold, priority, "
            "created_at) SELECT %s, 'pool-' || g, (%s::text[])[g %% %s + 1], '{}', md5('pool-' || g), false, 0, "
            "now() FROM generate_series(0, %s - 1) AS g",
            (project_id, texts, len(texts), prompts),
        )
        conn.execute(
            "INSERT INTO completions (prompt_id, position, text, source, round, metadata, created_at) "
            "SELECT p.id, s.position, s.text, 'uploaded', 0, '{}', now() FROM prompts p "
            "JOIN base_samples s ON s.base = substring(p.external_id from 6)::int %% %s "
            "WHERE p.project_id = %s",
            (len(texts), project_id),
        )
        conn.execute(
            "INSERT INTO slots (project_id, prompt_id, round, slot_index, status, priority, created_at) "
            "SELECT p.project_id, p.id, 0, i, 'open', 0, now() FROM prompts p, generate_series(0, %s - 1) AS i "
            "WHERE p.project_id = %s ORDER BY p.id, i",
            (n, project_id),
        )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")  # as a database that has been running a while would be
    return project_id, tokens


def _start(url: str, attempts: int = 3) -> tuple[subprocess.Popen[bytes], str]:
    """start_server, tried again when a busy machine keeps it from answering /readyz in time."""
    for attempt in range(attempts):
        try:
            return start_server(url)
        except RuntimeError as exc:
            print(f"  server start {attempt + 1}/{attempts} failed: {exc}", flush=True)
    raise RuntimeError(f"the server did not start in {attempts} attempts")


def run_annotators(
    base: str, project_id: int, tokens: list[str], seconds: float, think: float, task_limit: int | None = None
) -> tuple[Stats, float]:
    """Every annotator in its own thread until nothing is left, `seconds` pass or `task_limit` submits."""
    stats = Stats()
    stats.task_limit = task_limit
    started = time.monotonic()
    deadline = started + seconds
    threads = [
        threading.Thread(target=annotator, args=(base, project_id, tok, stats, deadline, i, think, i * 0.05))
        for i, tok in enumerate(tokens)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return stats, time.monotonic() - started


def _figures(stats: Stats) -> dict[str, float]:
    return {
        "p50_next_ms": round(statistics.median(stats.next_ms or [0]), 1),
        "p99_next_ms": round(pct(stats.next_ms, 0.99), 1),
        "p50_submit_ms": round(statistics.median(stats.submit_ms or [0]), 1),
        "p99_submit_ms": round(pct(stats.submit_ms, 0.99), 1),
    }


def run_pools(args: argparse.Namespace) -> None:
    """One fresh database per pool size, the same number of submits on each; one line per pool, then JSON."""
    from app.migrate import upgrade

    pools: list[dict[str, Any]] = []
    for size in args.pool:
        with fresh_database() as url:
            upgrade(url)
            t0 = time.monotonic()
            project_id, tokens = seed_pool(url, size, args.annotators, args.n)
            seeded = time.monotonic() - t0
            server, base = _start(url)
            try:
                limit = min(args.tasks, size * args.n)
                stats, seconds = run_annotators(base, project_id, tokens, args.seconds, args.think, limit)
            finally:
                stop_server(server)
            result = check(url, stats.acknowledged, args.n)
        figures = _figures(stats)
        print(
            f"pool={size:>7} seeded in {seeded:.1f} s: next-task p50 {figures['p50_next_ms']} ms, "
            f"p99 {figures['p99_next_ms']} ms; submit p50 {figures['p50_submit_ms']} ms, "
            f"p99 {figures['p99_submit_ms']} ms; submits={len(stats.acknowledged)} errors={len(stats.errors)} "
            f"lost={result['lost']} duplicated={result['duplicated']} over_collected={result['over_collected']}",
            flush=True,
        )
        for line in stats.errors[:5]:
            print("  error:", line)
        pools.append(
            {
                "prompts": size,
                **figures,
                "submits": len(stats.acknowledged),
                "requests_per_s": round(stats.requests / seconds, 1),
                "errors": len(stats.errors),
                "lost": result["lost"],
                "duplicated": result["duplicated"],
                "over_collected": result["over_collected"],
                "seed_seconds": round(seeded, 1),
            }
        )
    smallest, largest = pools[0], pools[-1]
    ratio = largest["p50_next_ms"] / smallest["p50_next_ms"] if smallest["p50_next_ms"] else 0.0
    print(f"next-task p50 at {largest['prompts']} prompts / at {smallest['prompts']}: {ratio:.2f}x")
    print(json.dumps({"annotators": args.annotators, "n": args.n, "tasks": args.tasks,
                      "next_p50_ratio": round(ratio, 2), "pools": pools}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--annotators", type=int, default=30)
    parser.add_argument("--n", type=int, default=3, help="annotations per prompt")
    parser.add_argument("--copies", type=int, default=3, help="copies of the 100 TL;DR prompts")
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--think", type=float, default=0.2, help="max think time per task (s)")
    parser.add_argument("--quick", action="store_true", help="10 annotators, 100 prompts, N=3, <= 90 s")
    parser.add_argument(
        "--pool",
        type=lambda text: [int(part) for part in text.split(",")],
        help="comma-separated pool sizes (prompts), e.g. 100,2000,100000: one run each, see the docstring",
    )
    parser.add_argument("--tasks", type=int, default=200, help="with --pool: submits per pool size")
    args = parser.parse_args()
    if args.quick:
        args.annotators, args.copies, args.seconds, args.think = 10, 1, 90, 0.05
    if args.pool:
        if not args.quick and args.seconds == 300:
            args.seconds = 120  # per pool size; the task limit normally ends each run first
        run_pools(args)
        return
    with fresh_database() as url:
        from app.migrate import upgrade

        upgrade(url)
        project_id, tokens, n_prompts = seed(url, args.annotators, args.n, args.copies)
        server, base = start_server(url)
        try:
            stats, seconds = run_annotators(base, project_id, tokens, args.seconds, args.think)
        finally:
            stop_server(server)
        result = check(url, stats.acknowledged, args.n)
    print(
        f"prompts={n_prompts} annotators={args.annotators} N={args.n} rankings={result['stored']} "
        f"target={n_prompts * args.n} errors={len(stats.errors)}"
    )
    for line in stats.errors[:5]:
        print("  error:", line)
    print(
        f"next-task p50 {statistics.median(stats.next_ms):.1f} ms, p99 {pct(stats.next_ms, 0.99):.1f} ms; "
        f"submit p50 {statistics.median(stats.submit_ms or [0]):.1f} ms, p99 {pct(stats.submit_ms, 0.99):.1f} ms"
    )
    print(f"lost={result['lost']} duplicated={result['duplicated']} over_collected={result['over_collected']}")
    summary: dict[str, Any] = {
        "requests_per_s": round(stats.requests / seconds, 1),
        "p50_next_ms": round(statistics.median(stats.next_ms), 1),
        "p99_next_ms": round(pct(stats.next_ms, 0.99), 1),
        "p50_submit_ms": round(statistics.median(stats.submit_ms or [0]), 1),
        "p99_submit_ms": round(pct(stats.submit_ms, 0.99), 1),
        "lost": result["lost"],
        "duplicated": result["duplicated"],
        "over_collected": result["over_collected"],
        "annotators": args.annotators,
        "seconds": round(seconds, 1),
    }
    print(json.dumps(summary))

if __name__ == "__main__":
    main()
