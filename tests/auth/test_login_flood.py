"""A login flood against a real server (uvicorn in its own process) leaves everyone else's requests fast, and
the flood itself is limited: 429 + Retry-After once the address has spent its budget (issue 16, item 1)."""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session

from tests.conftest import REPO, TEST_SECRET
from tests.factories import api_token, make_project, make_user

pytestmark = pytest.mark.slow

FLOOD_THREADS = 8
FLOOD_SECONDS = 4.0
IP_BURST = 5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(db_url: str, db: Session, tmp_path: Path) -> Iterator[str]:
    """`prefloop serve` on the test database, in a process of its own (its own GIL and event loop)."""
    env = dict(os.environ, PREFLOOP_ENV="test", PREFLOOP_SECRET_KEY=TEST_SECRET, PREFLOOP_DATABASE_URL=db_url,
               PREFLOOP_DATA_DIR=str(tmp_path / "data"), PREFLOOP_BASE_URL="http://127.0.0.1",
               PREFLOOP_LOGIN_IP_BURST=str(IP_BURST), PREFLOOP_LOGIN_IP_PER_MINUTE="30",
               PREFLOOP_LOG_LEVEL="warning", PYTHONPATH=str(REPO))
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    log: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            log.append(line)
            if "Uvicorn running on" in line:
                break
        else:
            pytest.fail("prefloop serve exited before listening:\n" + "".join(log))
        threading.Thread(target=lambda: log.extend(process.stdout or ()), daemon=True).start()
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a frozen event loop never gets to handle SIGTERM
            process.kill()
            process.wait(timeout=10)
    assert not [line for line in log if "Traceback" in line], "".join(log)


def _p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def _timed(client: httpx.Client, path: str, headers: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    response = client.get(path, headers=headers)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, (path, response.status_code, response.text[:200])
    return elapsed


def _flood(base_url: str, email: str, stop: threading.Event, statuses: Counter[int], retry_after: list[str],
           lock: threading.Lock) -> None:
    with httpx.Client(base_url=base_url, timeout=15) as client:
        token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/login").text)
        assert token
        n = 0
        while not stop.is_set():
            n += 1
            target = email if n % 2 else f"nobody{threading.get_ident()}-{n}@example.org"
            response = client.post("/login", data={"email": target, "password": "wrong password " + str(n),
                                                   "csrf_token": token.group(1)})
            with lock:
                statuses[response.status_code] += 1
                if response.status_code == 429:
                    retry_after.append(response.headers.get("retry-after", ""))


def test_a_login_flood_neither_freezes_the_server_nor_gets_through(server: str, db: Session) -> None:
    annotator = make_user(db)
    make_project(db)
    headers = api_token(db, annotator)
    db.commit()
    with httpx.Client(base_url=server, timeout=15) as other:
        for _ in range(5):  # warm up: connections, first queries, templates
            _timed(other, "/livez")
            _timed(other, "/api/projects", headers)
        base_live = [_timed(other, "/livez") for _ in range(40)]
        base_api = [_timed(other, "/api/projects", headers) for _ in range(40)]

        stop = threading.Event()
        statuses: Counter[int] = Counter()
        retry_after: list[str] = []
        lock = threading.Lock()
        flooders = [threading.Thread(target=_flood, args=(server, annotator.email, stop, statuses, retry_after, lock))
                    for _ in range(FLOOD_THREADS)]
        for thread in flooders:
            thread.start()
        flood_live: list[float] = []
        flood_api: list[float] = []
        deadline = time.monotonic() + FLOOD_SECONDS
        try:
            while time.monotonic() < deadline:
                flood_live.append(_timed(other, "/livez"))
                flood_api.append(_timed(other, "/api/projects", headers))
        finally:
            stop.set()
            for thread in flooders:
                thread.join(timeout=120)

    # The flood was limited: past the address's burst every attempt is a 429 with a Retry-After, no hash.
    assert not [code for code in statuses if code >= 500], statuses
    assert statuses[429] > statuses[401], statuses
    checked = statuses[401]
    assert checked <= IP_BURST + 30 * (FLOOD_SECONDS + 5) / 60 + 1, statuses
    assert retry_after and all(value.isdigit() and int(value) >= 1 for value in retry_after)

    # Everyone else stayed fast. Generous bounds (a loaded 2-core CI runner shares its cores with the flood and
    # with this process's flooding threads; measured here: p95 /livez ~0.05 s, the API ~0.15 s). Before the fix
    # every login hashed on the event loop: /livez took seconds and the API up to 14 s (issue 16).
    live, api = _p95(flood_live), _p95(flood_api)
    assert live <= max(10 * _p95(base_live), 0.5), (live, _p95(base_live), statuses)
    assert api <= max(10 * _p95(base_api), 1.0), (api, _p95(base_api), statuses)
