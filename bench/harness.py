"""Shared pieces of the HTTP benchmarks: databases (fresh or an ephemeral cluster), seeding, the server process.

Used by bench/annotate.py (load) and bench/faults.py (fault injection). Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

import httpx
import psycopg

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from app.auth import service as auth  # noqa: E402
from app.db import create_db_engine, make_session_factory, unit_of_work  # noqa: E402
from app.labeling.slots import ensure_slots  # noqa: E402
from app.models import Completion, Prompt  # noqa: E402
from app.projects import service as projects  # noqa: E402
from app.projects.schemas import ProjectCreate  # noqa: E402

PG_ADMIN = os.environ.get("PREFLOOP_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TLDR = (
    Path(os.environ.get("PREFLOOP_SHARED_DATA", REPO.parent / "shared" / "data"))
    / "instructgpt-samples"
    / "tldr_samples.csv"
)


def pct(values: list[float], q: float) -> float:
    """The q-quantile of `values` (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url(admin_url: str, name: str) -> str:
    """`admin_url` pointing at database `name` instead."""
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def fresh_database(admin_url: str = PG_ADMIN) -> Iterator[str]:
    """Create an empty database next to `admin_url`, yield its URL, drop it (with FORCE) afterwards."""
    name = f"prefloop_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(url: str, annotators: int, n: int, copies: int) -> tuple[int, list[str], int]:
    """Project + `copies` x the 100 TL;DR prompts (12 samples each) + slots + annotator tokens.

    Returns (project id, API tokens, number of prompts).
    """
    groups: dict[str, list[str]] = defaultdict(list)
    with TLDR.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            groups[row["context"]].append(row["sample"])
    engine = create_db_engine(url)
    with unit_of_work(make_session_factory(engine)) as db:
        project = projects.create(
            db, ProjectCreate(name="bench tldr", k_min=4, k_max=9, annotations_per_prompt=n), None
        )
        count = 0
        for copy in range(copies):
            for i, (context, samples) in enumerate(groups.items()):
                prompt = Prompt(
                    project_id=project.id,
                    external_id=f"c{copy}-p{i}",
                    text=context,
                    content_hash=f"{copy}-{i}",
                )
                db.add(prompt)
                db.flush()
                db.add_all(Completion(prompt_id=prompt.id, position=j, text=s) for j, s in enumerate(samples))
                count += 1
        db.flush()
        ensure_slots(db, project)
        tokens = []
        for a in range(annotators):
            user = auth.create_user(
                db, f"bench{a}@example.org", "annotator", password="bench password 123"
            ).user
            tokens.append(auth.create_api_token(db, user))
        project_id = project.id
    engine.dispose()
    return project_id, tokens, count


def rank_every_pair(conn: psycopg.Connection[object], project_id: int, prompt_filter: str = "") -> None:
    """Bulk-add one finished ranking per prompt (ordered by completion position) with all its comparisons.

    `prompt_filter` is a constant SQL fragment on `p` (e.g. "AND p.external_id LIKE 'hist%%'") limiting
    which prompts get a ranking; only rankings without an annotator (the bulk ones) get comparisons here.
    """
    conn.execute(
        "INSERT INTO rankings (project_id, prompt_id, source, ranks, shown_order, flags, likert, rationale, "
        "not_rankable, client_info, payload_hash, suggestion_shown, weight, created_at) "
        "SELECT %s, p.id, 'human', '{}', '[]', '{}', '{}', '', false, '{}', '', false, 1.0, now() "
        f"FROM prompts p WHERE p.project_id = %s {prompt_filter}",
        (project_id, project_id),
    )
    conn.execute(
        "INSERT INTO comparisons (project_id, prompt_id, ranking_id, winner_id, loser_id, winner_rank, "
        "loser_rank, rank_gap, is_tie, source, weight, created_at) "
        "SELECT %s, r.prompt_id, r.id, a.id, b.id, a.position + 1, b.position + 1, b.position - a.position, "
        "false, 'ranking', 1.0, now() FROM rankings r "
        "JOIN prompts p ON p.id = r.prompt_id "
        "JOIN completions a ON a.prompt_id = r.prompt_id "
        "JOIN completions b ON b.prompt_id = r.prompt_id AND b.position > a.position "
        f"WHERE r.project_id = %s AND r.annotator_id IS NULL {prompt_filter}",
        (project_id, project_id),
    )


def check(url: str, acknowledged: set[int], n: int) -> dict[str, int]:
    """lost: acknowledged but not stored; duplicated: >1 ranking per (prompt, annotator) or per assignment;
    over_collected: prompts with more than N rankings."""
    with psycopg.connect(url) as conn:
        stored = {row[0] for row in conn.execute("SELECT assignment_id FROM rankings WHERE source = 'human'")}
        dup_pairs = conn.execute(
            "SELECT count(*) FROM (SELECT prompt_id, annotator_id FROM rankings WHERE annotator_id IS NOT NULL "
            "GROUP BY 1, 2 HAVING count(*) > 1) d"
        ).fetchone()
        dup_assignments = conn.execute(
            "SELECT count(*) FROM (SELECT assignment_id FROM rankings WHERE assignment_id IS NOT NULL "
            "GROUP BY 1 HAVING count(*) > 1) d"
        ).fetchone()
        over = conn.execute(
            "SELECT count(*) FROM (SELECT prompt_id FROM rankings WHERE annotator_id IS NOT NULL "
            "GROUP BY 1 HAVING count(*) > %s) o",
            (n,),
        ).fetchone()
        total = conn.execute("SELECT count(*) FROM rankings").fetchone()
    return {
        "lost": len(acknowledged - stored),
        "duplicated": int(dup_pairs[0] if dup_pairs else 0) + int(dup_assignments[0] if dup_assignments else 0),
        "over_collected": int(over[0] if over else 0),
        "stored": int(total[0] if total else 0),
    }


def start_server(url: str, log: IO[bytes] | None = None, log_level: str = "warning") -> tuple[subprocess.Popen[bytes], str]:
    """uvicorn serving the app on a free port against `url`; returns (process, base URL) once /readyz answers.

    `log` receives the server's stdout and stderr (inherited when None).
    """
    port = free_port()
    env = {
        **os.environ,
        "PREFLOOP_DATABASE_URL": url,
        "PREFLOOP_ENV": "dev",
        "PREFLOOP_SECRET_KEY": "bench-" + uuid.uuid4().hex,
        "PREFLOOP_LOG_LEVEL": log_level,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", log_level, "--no-access-log"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server)
    except BaseException:
        stop_server(server)
        raise
    return server, base


def wait_ready(base: str, server: subprocess.Popen[bytes], limit: float = 30) -> None:
    """Poll /readyz until it answers below 500; raise if the server exits or `limit` seconds pass."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("server exited during start-up")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not become ready")


def stop_server(server: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if server.poll() is not None:
        return
    server.terminate()
    try:
        server.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=5)


def _pg_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not versions:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    return versions[-1].parent


class EphemeralPostgres:
    """A throw-away PostgreSQL cluster in a temp directory, listening on 127.0.0.1:<free port>.

    Lets a benchmark stop Postgres (`pg_ctl stop -m immediate`) without touching the machine's shared
    server. When running as root the cluster belongs to the `postgres` OS user (initdb refuses root).
    """

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="prefloop-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_user, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def init(self) -> None:
        """initdb (trust auth, fsync and synchronous_commit left on) and start."""
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-instructions", "-E", "UTF8", "--locale=C")
        self.start()

    def start(self) -> None:
        """Start the cluster and wait until it accepts connections."""
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
                   "-c max_connections=120 -c synchronous_commit=on -c fsync=on")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")

    def stop_immediate(self) -> None:
        """`pg_ctl stop -m immediate`: the server processes exit at once, no checkpoint (crash recovery next start)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def destroy(self) -> None:
        """Stop (if running) and delete the cluster's directory."""
        if (self.data / "postmaster.pid").exists():
            with suppress(subprocess.CalledProcessError):
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
