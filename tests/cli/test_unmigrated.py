"""A CLI command on a database nobody migrated says what to run, in one line, instead of a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.migrate import upgrade


def _prefloop(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PREFLOOP_DATABASE_URL=database_url, PREFLOOP_ENV="dev")
    return subprocess.run([sys.executable, "-c", "from app.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, timeout=60, check=False)


def test_unmigrated_database_asks_for_db_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = _prefloop(url, "users", "list")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: the database {url} is not at the current schema: run `prefloop db upgrade` first"
    ]
    assert "Traceback" not in result.stderr + result.stdout


def test_migrated_database_runs_the_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ready.db'}"
    upgrade(url)
    result = _prefloop(url, "users", "list", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
