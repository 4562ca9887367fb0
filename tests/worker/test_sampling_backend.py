"""The HTTP sampling backend (`sampling.backend = "openai"`) on both dialects: a round sampled through
`prefloop models serve` (a real subprocess on a free port) records which version wrote each completion; a server
that fails once is retried and the round succeeds; a server that never answers gives the job a clear error;
a 4xx is not retried; a server answering as another model is refused."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.jobs import queue
from app.models import Completion, Job, ModelVersion, Project, Prompt
from app.registry import service as registry
from app.settings import Settings
from tests.conftest import TEST_SECRET
from tests.worker.loop_helpers import tiny_loop_project
from worker.loop import WorkerConfig, run_worker
from worker.remote_sampling import CompletionsClient, Endpoint, SamplingServerError

Reply = tuple[int, dict[str, Any]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _use_server(db: Session, project: Project, base_url: str, **extra: Any) -> None:
    project.settings = {**project.settings,
                        "sampling": {**project.settings["sampling"], "backend": "openai", "base_url": base_url, **extra}}
    db.commit()


def _run_job(db: Session, engine: Engine, settings: Settings, project: Project,
             payload: dict[str, Any] | None = None) -> Job:
    job, _ = queue.enqueue(db, "sample_completions", project.id, payload or {}, max_attempts=1)
    db.commit()
    config = WorkerConfig(worker_id="t", once=True, heartbeat_seconds=0.1, stale_seconds=30, run_scheduler=False)
    assert run_worker(settings, config, engine=engine) == 1
    db.expire_all()
    done = db.get(Job, job.id)
    assert done is not None
    return done


def _completions(db: Session, project: Project) -> list[Completion]:
    return list(db.scalars(select(Completion).join(Prompt, Prompt.id == Completion.prompt_id)
                           .where(Prompt.project_id == project.id, Completion.source == "model")
                           .order_by(Completion.id)))


@contextlib.contextmanager
def _scripted_server(reply: Callable[[str, dict[str, Any]], Reply | None]) -> Iterator[tuple[str, list[Any]]]:
    """A real HTTP server in a thread; `reply(path, body)` gives (status, JSON) or None to never answer.
    Yields its /v1 root and the list of (method, path, body) it received."""
    seen: list[Any] = []
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body: dict[str, Any]) -> None:
            seen.append((self.command, self.path, body))
            answer = reply(self.path, body)
            if answer is None:
                release.wait(60)  # a server that never answers (the client's timeout ends it)
                return
            status, payload = answer
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._answer({})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            self._answer(json.loads(self.rfile.read(length) or b"{}"))

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def _models(*names: str) -> Reply:
    return 200, {"object": "list", "data": [{"id": n, "object": "model"} for n in names]}


def _choices(body: dict[str, Any], text: str = "ok") -> Reply:
    return 200, {"model": body["model"], "choices": [{"index": i, "text": f"{text} {i}", "finish_reason": "stop"}
                                                     for i in range(body["n"])]}


@pytest.mark.slow
def test_a_round_samples_through_prefloop_models_serve(db: Session, clean_engine: Engine, settings: Settings,
                                                       tiny_models: dict[str, Path], db_url: str,
                                                       tmp_path: Path) -> None:
    project = tiny_loop_project(db, tiny_models, prompts=3, per_round=3, k=3)
    v0 = registry.ensure_base_version(db, project, "policy")
    assert v0 is not None
    v1 = ModelVersion(project_id=project.id, kind="policy", name="policy-v1", base_model=str(tiny_models["policy"]),
                      checkpoint_path=str(tiny_models["policy"]), status="candidate")
    db.add(v1)
    db.commit()
    port = _free_port()
    env = dict(os.environ, PREFLOOP_ENV="test", PREFLOOP_SECRET_KEY=TEST_SECRET, PREFLOOP_DATABASE_URL=db_url,
               PREFLOOP_DATA_DIR=str(tmp_path / "data"), OMP_NUM_THREADS="1")
    server = subprocess.Popen([sys.executable, "-m", "app.cli", "models", "serve", "policy-v0", "policy-v1",
                               "--project", str(project.id), "--port", str(port), "--device", "cpu"],
                              env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    try:
        assert server.stdout is not None
        for line in server.stdout:
            log.append(line)
            if "Uvicorn running on" in line:
                break
        else:
            pytest.fail("prefloop models serve exited before listening:\n" + "".join(log))
        threading.Thread(target=lambda: log.extend(server.stdout or ()), daemon=True).start()
        root = f"http://127.0.0.1:{port}/v1"
        assert {m["id"] for m in httpx.get(f"{root}/models").json()["data"]} == {"policy-v0", "policy-v1"}

        _use_server(db, project, root)
        done = _run_job(db, clean_engine, settings, project, {"candidate_version_id": v1.id})
        assert done.status == "succeeded", (done.error, "".join(log))
        assert done.result["versions"] == {"policy-v1": 1, "policy-v0": 2}  # type: ignore[index]
        rows = _completions(db, project)
        assert len(rows) == 9 and len({r.prompt_id for r in rows}) == 3
        for prompt_id in {r.prompt_id for r in rows}:
            mine = [r for r in rows if r.prompt_id == prompt_id]
            assert sorted((r.model_name, r.model_version_id) for r in mine) == [
                ("policy-v0", v0.id), ("policy-v0", v0.id), ("policy-v1", v1.id)]
        assert all(isinstance(r.text, str) for r in rows) and any(r.text for r in rows)

        # The protocol itself: a seed gives the same samples again, n per prompt for a list of prompts,
        # an unknown model is a 404 naming the served ones, a bad field a 400 naming it.
        body = {"model": "policy-v0", "prompt": ["Hello", "Tell me"], "n": 2, "max_tokens": 5, "seed": 7}
        first, again = (httpx.post(f"{root}/completions", json=body, timeout=60).json() for _ in range(2))
        assert [c["index"] for c in first["choices"]] == [0, 1, 2, 3] and first["model"] == "policy-v0"
        assert first["choices"] == again["choices"]
        assert {c["finish_reason"] for c in first["choices"]} <= {"stop", "length"}
        missing = httpx.post(f"{root}/completions", json={**body, "model": "policy-v9"}, timeout=60)
        assert missing.status_code == 404 and "policy-v1" in missing.json()["error"]["message"]
        bad = httpx.post(f"{root}/completions", json={**body, "top_p": 0}, timeout=60)
        assert bad.status_code == 400 and "top_p" in bad.json()["error"]["message"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)


def test_a_server_that_fails_once_is_retried(db: Session, clean_engine: Engine, settings: Settings,
                                             tiny_models: dict[str, Path]) -> None:
    project = tiny_loop_project(db, tiny_models, prompts=2, per_round=2, k=3)
    failures: list[str] = []

    def reply(path: str, body: dict[str, Any]) -> Reply:
        if path.endswith("/models"):
            return _models("policy-v0")
        if not failures:
            failures.append(path)
            return 503, {"error": {"message": "warming up"}}
        return _choices(body, "fine")

    with _scripted_server(reply) as (root, seen):
        _use_server(db, project, root, max_retries=2, temperature=0.7, top_p=0.9, max_new_tokens=12, seed=5)
        done = _run_job(db, clean_engine, settings, project)
    assert done.status == "succeeded", done.error
    posts = [body for method, path, body in seen if method == "POST"]
    assert len(posts) == 3  # two prompts, one of them twice
    assert all(b["n"] == 3 and b["max_tokens"] == 12 and b["temperature"] == 0.7 and b["top_p"] == 0.9
               and b["model"] == "policy-v0" and isinstance(b["seed"], int) for b in posts)
    distinct = {json.dumps(b, sort_keys=True) for b in posts}
    assert len(distinct) == 2  # the retry asked for the same samples (same prompt, same seed)
    # The prompt went out rendered with the version's chat template, as the in-process sampler renders it.
    assert all(b["prompt"].startswith("<|user|>\n") and b["prompt"].endswith("<|assistant|>\n") for b in posts)
    rows = _completions(db, project)
    assert len(rows) == 6 and {r.text for r in rows} == {"fine 0", "fine 1", "fine 2"}
    assert {r.model_name for r in rows} == {"policy-v0"}


def test_a_server_that_never_answers_fails_the_job_clearly(db: Session, clean_engine: Engine, settings: Settings,
                                                           tiny_models: dict[str, Path]) -> None:
    project = tiny_loop_project(db, tiny_models, prompts=1, per_round=1, k=3)

    def reply(path: str, body: dict[str, Any]) -> Reply | None:
        return _models("policy-v0") if path.endswith("/models") else None

    with _scripted_server(reply) as (root, seen):
        _use_server(db, project, root, timeout_s=0.5, max_retries=1)
        done = _run_job(db, clean_engine, settings, project)
    assert done.status == "failed"
    assert "sampling policy-v0" in (done.error or "") and "did not answer within 0.5 s (2 attempts" in (done.error or "")
    assert len([s for s in seen if s[0] == "POST"]) == 2
    assert _completions(db, project) == []


def test_an_unserved_version_and_a_refusal_are_clear_and_not_retried(db: Session, clean_engine: Engine,
                                                                     settings: Settings,
                                                                     tiny_models: dict[str, Path]) -> None:
    project = tiny_loop_project(db, tiny_models, prompts=1, per_round=1, k=3)
    with _scripted_server(lambda path, body: _models("policy-v7")) as (root, _seen):
        _use_server(db, project, root)
        done = _run_job(db, clean_engine, settings, project)
    assert done.status == "failed" and "does not serve 'policy-v0'" in (done.error or "")
    assert "--served-model-name policy-v0" in (done.error or "")

    def refuse(path: str, body: dict[str, Any]) -> Reply:
        return _models("policy-v0") if path.endswith("/models") else (400, {"error": {"message": "bad\x00 top_p"}})

    with _scripted_server(refuse) as (root, seen):
        _use_server(db, project, root)
        done = _run_job(db, clean_engine, settings, project)
    assert done.status == "failed" and "with 400: bad  top_p" in (done.error or "")
    assert len([s for s in seen if s[0] == "POST"]) == 1


def test_the_client_checks_the_answer() -> None:
    """No database: an answer under another model name, or with the wrong number of choices, is refused."""
    answers = iter([(200, {"model": "other", "choices": [{"index": 0, "text": "x"}]}),
                    (200, {"model": "m", "choices": [{"index": 0, "text": "x"}]}),
                    (200, {"choices": [{"index": 1, "text": "b"}, {"index": 0, "text": "a"}]})])
    with _scripted_server(lambda path, body: next(answers)) as (root, _seen), \
            CompletionsClient(Endpoint(root, max_retries=0)) as client:
        with pytest.raises(SamplingServerError, match="answered as 'other'"):
            client.complete("m", "hi", 1, max_tokens=2, temperature=1.0, top_p=1.0)
        with pytest.raises(SamplingServerError, match="1 choice"):
            client.complete("m", "hi", 2, max_tokens=2, temperature=1.0, top_p=1.0)
        assert client.complete("m", "hi", 2, max_tokens=2, temperature=1.0, top_p=1.0) == ["a", "b"]


def test_settings_refuse_an_openai_backend_without_a_url() -> None:
    from pydantic import ValidationError

    from app.projects.schemas import SamplingSettings

    with pytest.raises(ValidationError, match="needs base_url"):
        SamplingSettings(backend="openai")
    with pytest.raises(ValidationError, match="api_key_env"):
        SamplingSettings(api_key_env="MY KEY; rm")
    assert SamplingSettings().backend == "in_process"
