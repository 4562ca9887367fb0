"""The built wheel is an install: outside the checkout it migrates a database and serves pages and assets.

One module-scoped fresh venv gets the wheel (never the checkout) and the core dependencies only, pinned
by requirements/lock.txt when it exists; pip's cache keeps the second run fast.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app import __version__

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements" / "lock.txt"


def _clean_env(**extra: str) -> dict[str, str]:
    # Nothing from this checkout or this venv may leak into the installed one.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PREFLOOP_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, **extra}


def _run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env or _clean_env(), capture_output=True,
                            text=True, timeout=540, check=False)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def venv_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a fresh venv holding the wheel built from this checkout and its core dependencies."""
    root = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", root / "dist", REPO, cwd=root)
    (wheel,) = (root / "dist").glob("prefloop-*.whl")
    venv = root / "venv"
    # No pip inside the new venv: this venv's pip installs into it (`--python`), which saves a bootstrap.
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=root)
    constraints = ["-c", LOCK] if LOCK.exists() else []
    _run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", wheel, *constraints,
         cwd=root)
    return venv / "bin"


@pytest.fixture()
def empty_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def served(venv_bin: Path, empty_dir: Path) -> Iterator[str]:
    """`prefloop db upgrade` then `prefloop serve` from an empty folder; yields the base URL."""
    env = _clean_env(PREFLOOP_ENV="dev", PREFLOOP_DATABASE_URL=f"sqlite:///{empty_dir / 'prefloop.db'}",
                     PREFLOOP_DATA_DIR=str(empty_dir / "data"))
    _run(venv_bin / "prefloop", "db", "upgrade", cwd=empty_dir, env=env)
    port = _free_port()
    server = subprocess.Popen([venv_bin / "prefloop", "serve", "--host", "127.0.0.1", "--port", str(port)],
                              cwd=empty_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Uvicorn says when it listens; reading its log waits for exactly that, and EOF means it died.
        assert server.stdout is not None
        log: list[str] = []
        for line in server.stdout:
            log.append(line)
            if "Uvicorn running on" in line:
                break
        else:
            pytest.fail("prefloop serve exited before listening:\n" + "".join(log))
        yield f"http://127.0.0.1:{port}"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()


def test_installed_package_is_the_wheel_without_torch(venv_bin: Path, empty_dir: Path) -> None:
    probe = ("import importlib.util, app, app.paths; "
             "print(app.__file__); print(app.paths.TEMPLATE_DIR); print(app.paths.STATIC_DIR); "
             "print(importlib.util.find_spec('torch') is None)")
    lines = _run(venv_bin / "python", "-c", probe, cwd=empty_dir).stdout.splitlines()
    venv = venv_bin.parent
    assert all(Path(p).is_relative_to(venv) for p in lines[:3]), lines
    assert lines[1].endswith("_bundled/templates") and lines[2].endswith("_bundled/static")
    assert lines[3] == "True", "the core install pulled torch"


def test_version(venv_bin: Path, empty_dir: Path) -> None:
    assert _run(venv_bin / "prefloop", "--version", cwd=empty_dir).stdout.strip() == f"prefloop {__version__}"
    assert _run(venv_bin / "python", "-m", "app", "--version", cwd=empty_dir).stdout.strip() == f"prefloop {__version__}"


def test_serves_login_its_stylesheet_and_readyz(served: str) -> None:
    with httpx.Client(base_url=served, timeout=10) as client:
        login = client.get("/login")
        assert login.status_code == 200
        sheets = re.findall(r'<link rel="stylesheet" href="(/static/[^"]+)"', login.text)
        assert sheets, "the login page links no stylesheet under /static/"
        css = client.get(sheets[0])
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")
        assert len(css.content) > 0
        assert client.get("/readyz").status_code == 200
