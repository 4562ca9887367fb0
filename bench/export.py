"""Export benchmark: `prefloop export` (pairs or rankings, JSONL or Parquet) against `psql \\copy` of the
same rows, on Postgres.

Seeds N comparisons (N / 6 rankings of four answers) into a database of its own (generate_series INSERT …
SELECT; created and dropped here), then times the real CLI in a subprocess and samples its peak RSS, then
times `\\copy` of a query producing the same columns. Prints a comparison and, last, one JSON line.

    python bench/export.py --quick                             # 100k comparisons, under two minutes
    python bench/export.py                                     # 1M comparisons
    python bench/export.py --quick --kind rankings --format parquet
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import rank_every_pair  # noqa: E402

PG_ADMIN_URL = os.environ.get("PREFLOOP_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PAIRS_PER_PROMPT = 6  # four completions per prompt, every pair ranked


def seed(url: str, comparisons: int) -> int:
    """Fill the schema with one project and `comparisons` comparisons; returns the project id."""
    prompts = max(1, comparisons // PAIRS_PER_PROMPT)
    with psycopg.connect(url, autocommit=True) as conn:
        project_id = conn.execute(
            "INSERT INTO projects (name, guidelines, k_min, k_max, annotations_per_prompt, lease_minutes, "
            "allow_fewer_than_k_min, settings, created_at) VALUES ('bench', '', 4, 4, 1, 30, false, '{}', now()) "
            "RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "INSERT INTO prompts (project_id, external_id, text, metadata, content_hash, is_gold, priority, created_at) "
            "SELECT %s, 'p' || g, 'Summarise the following support ticket number ' || g || ': ' "
            "|| repeat('the customer cannot log in after resetting the password; ', 3), '{}', md5(g::text), "
            "false, 0, now() FROM generate_series(1, %s) g",
            (project_id, prompts),
        )
        conn.execute(
            "INSERT INTO completions (prompt_id, position, text, source, round, metadata, created_at) "
            "SELECT p.id, k, 'Answer ' || k || ' to prompt ' || p.id || ': ' "
            "|| repeat('try clearing cookies and resetting again. ', 2 + k), 'uploaded', 0, '{}', now() "
            "FROM prompts p CROSS JOIN generate_series(0, 3) k WHERE p.project_id = %s",
            (project_id,),
        )
        rank_every_pair(conn, project_id)
        # Each ranking ranks its four answers in position order, shown in that order (what `rankings` exports).
        conn.execute(
            "UPDATE rankings r SET ranks = o.ranks, shown_order = o.shown FROM ("
            "SELECT prompt_id, json_object_agg(id::text, position + 1) AS ranks, json_agg(id ORDER BY position) "
            "AS shown FROM completions GROUP BY prompt_id) o WHERE o.prompt_id = r.prompt_id AND r.project_id = %s",
            (project_id,),
        )
        conn.execute("ANALYZE")
    return int(project_id)


COPY_QUERIES = {"pairs": (
    "SELECT p.text AS prompt, w.text AS chosen, l.text AS rejected, c.id AS comparison_id, c.prompt_id, "
    "c.ranking_id AS group_id, c.annotator_id, c.winner_rank AS chosen_rank, c.loser_rank AS rejected_rank, "
    "c.rank_gap, c.source, c.weight, c.created_at FROM comparisons c "
    "JOIN prompts p ON p.id = c.prompt_id JOIN completions w ON w.id = c.winner_id "
    "JOIN completions l ON l.id = c.loser_id WHERE c.project_id = {pid} AND NOT c.is_tie ORDER BY c.id"
), "rankings": (
    "SELECT r.id AS ranking_id, r.prompt_id, p.text AS prompt, (SELECT json_agg(x.text ORDER BY x.position) "
    "FROM completions x WHERE x.prompt_id = r.prompt_id) AS completions, r.ranks, r.shown_order, r.annotator_id, "
    "r.flags, r.likert, r.rationale, r.not_rankable, r.wall_seconds, r.active_seconds, r.weight, r.source, "
    "r.created_at FROM rankings r JOIN prompts p ON p.id = r.prompt_id WHERE r.project_id = {pid} ORDER BY r.id"
)}


def run_export(url: str, project_id: int, kind: str, fmt: str, out: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB, sampled every 20 ms) of `prefloop export` in a subprocess."""
    env = {**os.environ, "PREFLOOP_DATABASE_URL": url}
    cmd = [sys.executable, "-m", "app.cli", "export", str(project_id), "--kind", kind, "--format", fmt,
           "-o", str(out)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    handle = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, handle.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"prefloop export failed with {proc.returncode}")
    return elapsed, peak / 2**20


def run_copy(url: str, project_id: int, kind: str, out: Path) -> float:
    query = COPY_QUERIES[kind].format(pid=project_id)
    start = time.perf_counter()
    subprocess.run(["psql", url, "-q", "-c", f"\\copy ({query}) TO '{out}' WITH (FORMAT csv, HEADER)"], check=True)
    return time.perf_counter() - start


def count_rows(path: Path, fmt: str) -> int:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100k comparisons instead of 1M")
    parser.add_argument("--rows", type=int, default=None, help="number of comparisons to seed")
    parser.add_argument("--kind", choices=tuple(COPY_QUERIES), default="pairs", help="export kind (default pairs)")
    parser.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl", dest="fmt",
                        help="export format (default jsonl)")
    args = parser.parse_args()
    kind, fmt = args.kind, args.fmt
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    rows = max(1, rows // PAIRS_PER_PROMPT) * PAIRS_PER_PROMPT  # whole prompts
    name = f"prefloop_bench_{uuid.uuid4().hex[:10]}"
    url = re.sub(r"/[^/]*$", f"/{name}", PG_ADMIN_URL)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        sys.path.insert(0, str(REPO))
        from app.migrate import upgrade

        upgrade(url)
        t0 = time.perf_counter()
        project_id = seed(url, rows)
        print(f"seeded {rows} comparisons in {time.perf_counter() - t0:.1f} s")
        expected = rows if kind == "pairs" else rows // PAIRS_PER_PROMPT
        with tempfile.TemporaryDirectory() as tmp:
            exported_file, copied = Path(tmp) / f"{kind}.{fmt}", Path(tmp) / f"{kind}.csv"
            run_copy(url, project_id, kind, copied)  # warm the cache so neither side pays for cold pages
            copy_s = run_copy(url, project_id, kind, copied)
            export_s, peak_mb = run_export(url, project_id, kind, fmt, exported_file)
            exported = count_rows(exported_file, fmt)
            if exported != expected:
                raise SystemExit(f"exported {exported} rows, expected {expected}")
            sizes = exported_file.stat().st_size / 2**20, copied.stat().st_size / 2**20
        ours, theirs = expected / export_s, expected / copy_s
        print(f"prefloop export : {export_s:6.2f} s  {ours:>10,.0f} rows/s  {sizes[0]:.0f} MB {kind} {fmt}  "
              f"peak RSS {peak_mb:.0f} MB (process start included)")
        print(f"psql \\copy      : {copy_s:6.2f} s  {theirs:>10,.0f} rows/s  {sizes[1]:.0f} MB CSV")
        print(f"ratio           : {ours / theirs:.0%} of COPY's rows/s (target >= 50 %), RSS target < 200 MB")
        print(json.dumps({
            "kind": kind, "format": fmt, "prefloop_rows_per_s": round(ours), "copy_rows_per_s": round(theirs),
            "ratio": round(ours / theirs, 3), "peak_rss_mb": round(peak_mb, 1), "rows": expected,
        }))
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
