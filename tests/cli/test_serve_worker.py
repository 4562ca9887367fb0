"""`prefloop serve --with-worker` takes its worker down with it: no orphan after SIGTERM (or even SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import TEST_SECRET

try:  # psutil comes with the dev install (through accelerate); /proc does the same job without it
    import psutil
except ImportError:  # pragma: no cover - depends on the environment
    psutil = None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="process-tree checks read Linux's /proc and pidfds"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, children first."""
    if psutil is not None:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    parent_of: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent_of[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])  # the field after `(comm) state`
    found: list[int] = []
    frontier = [pid]
    while frontier:
        kids = [child for child, parent in parent_of.items() if parent == frontier[-1]]
        frontier.pop()
        found += kids
        frontier += kids
    return found


def _still_running(pids: list[int], timeout: float) -> list[int]:
    """The processes among `pids` that have not exited within `timeout` seconds (zombies count as exited).

    A pidfd becomes readable when its process exits, whoever its parent is by then: waiting needs no polling.
    """
    waiting: dict[int, int] = {}
    for pid in pids:
        try:
            waiting[os.pidfd_open(pid)] = pid
        except ProcessLookupError:
            continue
    opened = list(waiting)
    deadline = time.monotonic() + timeout
    try:
        while waiting:
            ready, _, _ = select.select(list(waiting), [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            for fd in ready:
                del waiting[fd]
        return list(waiting.values())
    finally:
        for fd in opened:
            os.close(fd)


def _wait_for(lines: list[str], stream: object, *markers: str) -> None:
    """Read the merged log until every marker has appeared; EOF first means the server died."""
    pending = set(markers)
    for line in stream:  # type: ignore[attr-defined]
        lines.append(line)
        pending = {marker for marker in pending if marker not in line}
        if not pending:
            return
    pytest.fail(f"prefloop serve exited before logging {sorted(pending)}:\n" + "".join(lines))


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_worker_stops_with_the_server(tmp_path: Path, stop_signal: signal.Signals) -> None:
    env = dict(os.environ, PREFLOOP_ENV="test", PREFLOOP_SECRET_KEY=TEST_SECRET,
               PREFLOOP_DATABASE_URL=f"sqlite:///{tmp_path / 'prefloop.db'}", PREFLOOP_DATA_DIR=str(tmp_path / "data"),
               PREFLOOP_BASE_URL="http://127.0.0.1")
    cli = [sys.executable, "-m", "app.cli"]
    subprocess.run([*cli, "db", "upgrade"], env=env, cwd=tmp_path, check=True, capture_output=True, timeout=120)
    port = _free_port()
    server = subprocess.Popen([*cli, "serve", "--with-worker", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    descendants: list[int] = []
    try:
        assert server.stdout is not None
        # Both have said they are up: uvicorn listens, the worker has installed its signal handlers and polls.
        _wait_for(log, server.stdout, "Uvicorn running on", "started (poll")
        threading.Thread(target=lambda: log.extend(server.stdout or ()), daemon=True).start()  # keep the pipe drained
        descendants = _descendants(server.pid)
        assert descendants, "the server started no worker process"

        server.send_signal(stop_signal)
        server.wait(timeout=30)
        # A worker stuck anywhere is cut off by its lifeline 30 s after the server went (worker/lifeline.py).
        orphans = _still_running(descendants, timeout=45)
        assert not orphans, f"worker process(es) {orphans} outlived the server ({stop_signal.name}):\n" + "".join(log)
    finally:
        for pid in [*descendants, server.pid]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        server.wait(timeout=30)
