"""Load benchmark of the ranking workflow over the real HTTP server and a fresh Postgres database.

Creates a database, migrates it, seeds a project from the shared TL;DR CSV (100 prompts x 12 samples),
starts uvicorn as a subprocess, then runs M simulated annotators (threads with httpx, staggered starts,
think time) against the JSON API until no task is left or the time runs out. Prints requests/s and
p50/p99 latency of next-task and submit, checks the database for lost, duplicated and over-collected
rankings, drops the database and ends with one JSON line.

    .venv/bin/python bench/annotate.py --quick          # < 2 minutes
    .venv/bin/python bench/annotate.py --annotators 50 --copies 5 --seconds 600
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import check, fresh_database, pct, seed, start_server, stop_server  # noqa: E402


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next_ms: list[float] = []
        self.submit_ms: list[float] = []
        self.requests = 0
        self.errors: list[str] = []
        self.acknowledged: set[int] = set()


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
        while time.monotonic() < deadline:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--annotators", type=int, default=30)
    parser.add_argument("--n", type=int, default=3, help="annotations per prompt")
    parser.add_argument("--copies", type=int, default=3, help="copies of the 100 TL;DR prompts")
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--think", type=float, default=0.2, help="max think time per task (s)")
    parser.add_argument("--quick", action="store_true", help="10 annotators, 100 prompts, N=3, <= 90 s")
    args = parser.parse_args()
    if args.quick:
        args.annotators, args.copies, args.seconds, args.think = 10, 1, 90, 0.05
    with fresh_database() as url:
        from app.migrate import upgrade

        upgrade(url)
        project_id, tokens, n_prompts = seed(url, args.annotators, args.n, args.copies)
        server, base = start_server(url)
        try:
            stats = Stats()
            started = time.monotonic()
            deadline = started + args.seconds
            threads = [
                threading.Thread(
                    target=annotator, args=(base, project_id, tok, stats, deadline, i, args.think, i * 0.05)
                )
                for i, tok in enumerate(tokens)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            seconds = time.monotonic() - started
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
