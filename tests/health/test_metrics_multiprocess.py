"""PROMETHEUS_MULTIPROC_DIR: several web processes write their counters into one folder and /metrics, whichever
process answers it, adds them up (two app processes one after the other, then two uvicorn workers at once)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.web.metrics import exposition
from tests.conftest import REPO, TEST_SECRET

pytestmark = pytest.mark.slow  # app processes of their own

CHILD = """
import sys
from fastapi.testclient import TestClient
from app.main import create_app
with TestClient(create_app()) as client:
    for _ in range(int(sys.argv[1])):
        assert client.get("/livez").status_code == 200
    print(client.get("/metrics").text)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(db_url: str, tmp_path: Path, multiproc: Path) -> dict[str, str]:
    return dict(os.environ, PREFLOOP_ENV="test", PREFLOOP_SECRET_KEY=TEST_SECRET, PREFLOOP_DATABASE_URL=db_url,
                PREFLOOP_DATA_DIR=str(tmp_path / "data"), PREFLOOP_LOG_LEVEL="warning",
                PROMETHEUS_MULTIPROC_DIR=str(multiproc), PYTHONPATH=str(REPO))


def _value(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def _livez(text: str) -> float | None:
    return _value(text, "prefloop_http_requests_total", method="GET", route="/livez", status="200")


def test_two_app_processes_add_up_in_one_folder(db_url: str, tmp_path: Path) -> None:
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    env = _env(db_url, tmp_path, multiproc)
    outputs = []
    for requests in (3, 2):
        done = subprocess.run([sys.executable, "-c", CHILD, str(requests)], env=env, cwd=REPO, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert _livez(outputs[0]) == 3
    assert _livez(outputs[1]) == 5  # the second process answers for both
    assert _value(outputs[1], "prefloop_database_up") == 1  # the database metrics are there too
    assert _value(outputs[1], "process_resident_memory_bytes") is None  # not summable: left out in this mode
    assert len({p.name.split("_")[-1] for p in multiproc.glob("counter_*.db")}) == 2  # one file per process
    assert _livez(exposition(None, str(multiproc)).decode()) == 5


@pytest.fixture
def two_workers(db_url: str, tmp_path: Path) -> Iterator[str]:
    """uvicorn with two worker processes sharing one PROMETHEUS_MULTIPROC_DIR."""
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app", "--host", "127.0.0.1", "--port",
         str(port), "--workers", "2"],
        env=_env(db_url, tmp_path, multiproc), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    log: list[str] = []
    try:
        assert process.stdout is not None
        started = 0
        for line in process.stdout:
            log.append(line)
            started += "Application startup complete" in line
            if started == 2:
                break
        else:
            pytest.fail("uvicorn exited before both workers started:\n" + "".join(log))
        threading.Thread(target=lambda: log.extend(process.stdout or ()), daemon=True).start()
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    assert not [line for line in log if "Traceback" in line], "".join(log)


def test_two_uvicorn_workers_answer_the_same_total(two_workers: str) -> None:
    for _ in range(20):
        with httpx.Client(base_url=two_workers) as client:  # a new connection each time: either worker may answer
            assert client.get("/livez").status_code == 200
    totals = set()
    for _ in range(10):
        with httpx.Client(base_url=two_workers) as client:
            totals.add(_livez(client.get("/metrics").text))
    assert totals == {20.0}
