"""An unset PREFLOOP_ENV is production: no generated secret, a weak one refused in one line naming the
variable (issue 16: the default was dev, so a deployment that forgot the variable ran with a throwaway
secret and without Secure cookies)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from app.secret_strength import secret_problem
from app.settings import Settings, SettingsError

WEAK = ["", "changeme", "aaaaaaaaaaaaaaaa", "a" * 40, "0123456789abcdef" * 2, "0123456789abcdef" * 4,
        "abcdefghijklmnopqrstuvwxyz012345", "passwordpassword" * 3, "short-but-random-Qx7"]


def test_an_unset_env_is_production(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PREFLOOP_ENV", raising=False)
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert settings.env == "prod" and not settings.is_dev
    with pytest.raises(SettingsError, match="PREFLOOP_SECRET_KEY"):
        settings.validate_for_serving()
    assert not (tmp_path / "dev-secret-key").exists()  # nothing was generated in production


@pytest.mark.parametrize("secret", WEAK)
def test_weak_secrets_are_refused_in_production(secret: str, tmp_path: Path) -> None:
    assert secret_problem(secret) is not None
    with pytest.raises(SettingsError, match="^PREFLOOP_SECRET_KEY is "):
        Settings(env="prod", secret_key=secret, data_dir=tmp_path).validate_for_serving()


def test_generated_secrets_pass(tmp_path: Path) -> None:
    for _ in range(200):
        for secret in (secrets.token_urlsafe(32), secrets.token_hex(32), secrets.token_urlsafe(48)):
            assert secret_problem(secret) is None, secret
    strong = secrets.token_urlsafe(32)
    assert Settings(env="prod", secret_key=strong, data_dir=tmp_path).effective_secret() == strong


def test_serve_without_a_secret_says_so_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLOOP_")}
    env.update(PREFLOOP_DATA_DIR=str(tmp_path / "data"), PREFLOOP_SECRET_KEY="aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    result = subprocess.run([sys.executable, "-m", "app", "serve", "--port", "1"], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path, env=env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: PREFLOOP_SECRET_KEY is too predictable"), result.stderr
    assert "Traceback" not in result.stderr


def test_make_run_is_dev_and_the_deployment_is_production() -> None:
    root = Path(__file__).resolve().parents[2]
    assert "run: export PREFLOOP_ENV ?= dev" in (root / "Makefile").read_text()
    assert "PREFLOOP_ENV: prod" in (root / "docker-compose.yml").read_text()
