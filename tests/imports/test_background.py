"""Imports run on the web process's import thread: the upload answers before the import finishes, progress
shows while it runs, the result equals the synchronous import's, a failure (bad lines or an error between
batches) writes nothing, and an import a dead server left `running` is failed at the next start-up."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.imports import service
from app.imports.runner import ImportRunner
from app.imports.schemas import ImportOptions
from app.main import create_app
from app.models import Comparison, Completion, ImportRecord, Prompt, Ranking
from app.settings import Settings
from tests.factories import api_token, login, make_project, make_user
from tests.imports.waiting import finish_api, runner_of


def _file(n: int, bad_line: int | None = None) -> bytes:
    lines = []
    for i in range(1, n + 1):
        record: dict[str, Any] = {"prompt": f"Question {i}?", "completions": [f"a{i}", f"b{i}", "c", "d"]}
        if i == bad_line:
            record["prompt"] = ""
        lines.append(json.dumps(record))
    return ("\n".join(lines) + "\n").encode()


def _pairs() -> bytes:
    # Preference pairs whose prompts repeat far apart: merged into one prompt each, in first-seen order.
    rows = [{"prompt": f"P{i % 3}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(9)]
    rows.append({"prompt": "alone", "completions": ["x", "y", "z", "w"]})
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _count(engine: Engine, table: Any) -> int:
    # A fresh DEFERRED read: on SQLite it must not queue behind the import's write lock.
    with engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        return int(conn.scalar(select(func.count()).select_from(table)) or 0)


class Gate:
    """Holds the import thread at a chosen progress report until the test lets it go."""

    def __init__(self, runner: ImportRunner, stop_at: Callable[[str, int], bool]) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()
        original = runner._report

        def report(import_id: int, phase: str, count: int) -> None:
            original(import_id, phase, count)
            if stop_at(phase, count) and not self.reached.is_set():
                self.reached.set()
                assert self.release.wait(60), "the test never released the import"

        runner._report = report  # type: ignore[method-assign]

    def wait(self) -> None:
        assert self.reached.wait(60), "the import never reached the gate"


@pytest.fixture
def admin_headers(db: Session) -> dict[str, str]:
    admin = make_user(db, "admin")
    headers = api_token(db, admin)
    db.commit()
    return headers


def _post(client: TestClient, project_id: int, headers: dict[str, str], data: bytes,
          name: str = "big.jsonl") -> Any:
    return client.post(f"/api/projects/{project_id}/imports", headers=headers,
                       files={"file": (name, data, "application/json")})


def test_upload_answers_at_once_and_shows_progress_while_checking(
        client: TestClient, db: Session, clean_engine: Engine, dialect: str) -> None:
    assert dialect in ("sqlite", "postgresql")
    admin = make_user(db, "admin")
    admin_headers = api_token(db, admin)
    project = make_project(db)
    db.commit()
    gate = Gate(runner_of(client), lambda phase, count: phase == "checking" and count >= 2000)
    started = _post(client, project.id, admin_headers, _file(3000))
    assert started.status_code == 202, started.text
    gate.wait()
    running = client.get(started.json()["status_url"], headers=admin_headers).json()
    assert running["status"] == "running" and running["ok"] is None
    assert running["progress"] == {"phase": "checking", "count": 2000}
    login(client, admin.email)
    fragment = client.get(f"/projects/{project.id}/imports/{started.json()['import_id']}",
                          headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert "2000 line(s) read" in fragment.text and 'hx-trigger="every 1s"' in fragment.text
    assert _count(clean_engine, Prompt) == 0
    gate.release.set()
    done = finish_api(client, started, admin_headers)
    assert done["status"] == "succeeded" and done["progress"] is None
    assert done["counts"]["prompts_added"] == 3000 and done["counts"]["completions_added"] == 12000
    assert _count(clean_engine, Prompt) == 3000


def test_rows_stay_invisible_until_the_last_batch_commits(
        client: TestClient, db: Session, clean_engine: Engine, admin_headers: dict[str, str], dialect: str) -> None:
    if dialect == "sqlite":
        pytest.skip("SQLite: the import's transaction holds the only write lock, so the status poll would queue")
    project = make_project(db)
    db.commit()
    gate = Gate(runner_of(client), lambda phase, count: phase == "importing" and count >= service.BATCH_PROMPTS)
    started = _post(client, project.id, admin_headers, _file(service.BATCH_PROMPTS * 2 + 7))
    gate.wait()
    running = client.get(started.json()["status_url"], headers=admin_headers).json()
    assert running["progress"] == {"phase": "importing", "count": service.BATCH_PROMPTS}
    assert _count(clean_engine, Prompt) == 0  # one batch is written, none committed
    gate.release.set()
    assert finish_api(client, started, admin_headers)["counts"]["prompts_added"] == service.BATCH_PROMPTS * 2 + 7


def test_background_result_equals_the_synchronous_import(
        client: TestClient, db: Session, admin_headers: dict[str, str]) -> None:
    background, direct = make_project(db, name="background"), make_project(db, name="direct")
    db.commit()
    done = finish_api(client, _post(client, background.id, admin_headers, _pairs(), "pairs.jsonl"), admin_headers)
    outcome = service.run_import(db, direct, io.BytesIO(_pairs()), "pairs.jsonl", ImportOptions())
    db.commit()
    assert outcome.ok and done["counts"] == outcome.counts
    assert outcome.counts["prompts_added"] == 4 and outcome.counts["rankings_added"] == 9

    def shape(project_id: int) -> list[tuple[str | None, list[str], int]]:
        prompts = db.scalars(select(Prompt).where(Prompt.project_id == project_id).order_by(Prompt.id)).all()
        return [(p.text,
                 list(db.scalars(select(Completion.text).where(Completion.prompt_id == p.id)
                                 .order_by(Completion.position))),
                 db.scalar(select(func.count()).select_from(Ranking).where(Ranking.prompt_id == p.id)) or 0)
                for p in prompts]

    expected = shape(direct.id)
    assert [text for text, _, _ in expected] == ["P0", "P1", "P2", "alone"]
    assert expected[0][1] == ["good 0", "bad 0", "good 3", "bad 3", "good 6", "bad 6"] and expected[0][2] == 3
    assert shape(background.id) == expected


def test_bad_lines_fail_the_import_and_write_nothing(
        client: TestClient, db: Session, clean_engine: Engine, admin_headers: dict[str, str]) -> None:
    project = make_project(db)
    db.commit()
    failed = finish_api(client, _post(client, project.id, admin_headers, _file(2500, bad_line=2345)), admin_headers)
    assert failed["status"] == "failed" and failed["error_count"] == 1
    assert failed["errors"][0]["line"] == 2345 and failed["errors"][0]["field"] == "prompt"
    assert _count(clean_engine, Prompt) == 0 and _count(clean_engine, Completion) == 0


def test_an_error_after_some_batches_rolls_every_batch_back(
        client: TestClient, db: Session, clean_engine: Engine, admin_headers: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_project(db)
    db.commit()
    real_insert = service._insert
    calls: list[int] = []

    def insert_then_break(*args: Any) -> dict[str, int]:
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real_insert(*args)

    monkeypatch.setattr(service, "_insert", insert_then_break)
    failed = finish_api(client, _post(client, project.id, admin_headers, _file(service.BATCH_PROMPTS * 3)),
                        admin_headers)
    assert len(calls) == 3 and failed["status"] == "failed"
    assert "stopped on an error: OSError" in failed["errors"][0]["reason"]
    for table in (Prompt, Completion, Ranking, Comparison):
        assert _count(clean_engine, table) == 0


def test_an_import_left_running_is_failed_at_start_up(settings: Settings, clean_engine: Engine, db: Session) -> None:
    project = make_project(db)
    record = service.queue_import(db, project, "crashed.jsonl", "0" * 64, "jsonl", None)
    db.commit()
    uploads = settings.data_dir / "uploads"
    uploads.mkdir(parents=True)
    (uploads / "left-behind.upload").write_bytes(b"{}")
    app: FastAPI = create_app(settings, engine=clean_engine)
    with TestClient(app):
        db.expire_all()
        failed = db.get(ImportRecord, record.id)
        assert failed is not None and failed.status == "failed" and failed.finished_at is not None
        assert failed.errors[0]["reason"] == service.INTERRUPTED
        assert not list(uploads.iterdir())


def test_stopping_the_server_interrupts_the_running_import(
        app: FastAPI, db: Session, clean_engine: Engine, admin_headers: dict[str, str]) -> None:
    project = make_project(db)
    db.commit()
    client = TestClient(app)
    client.__enter__()
    gate = Gate(runner_of(client), lambda phase, count: phase == "checking" and count >= 1000)
    started = _post(client, project.id, admin_headers, _file(3000))
    gate.wait()
    stopping = threading.Thread(target=client.__exit__, args=(None, None, None))
    stopping.start()
    assert runner_of(client)._stop.wait(60)  # let the import go only once the server is stopping
    gate.release.set()
    stopping.join(60)
    assert not stopping.is_alive()
    db.expire_all()
    record = db.get(ImportRecord, started.json()["import_id"])
    assert record is not None and record.status == "failed" and record.errors[0]["reason"] == service.INTERRUPTED
    assert _count(clean_engine, Prompt) == 0


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    yield
    assert not [t for t in threading.enumerate() if t.name.startswith("prefloop-import")]
