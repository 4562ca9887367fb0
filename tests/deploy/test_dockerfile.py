"""The Docker build context holds what the Dockerfile copies and none of the secrets, data or caches beside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _pattern(text: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker reads it: `**` spans folders, `*` and `?` stay within one name."""
    out, i = "", 0
    text = text.strip("/")
    while i < len(text):
        if text.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif text.startswith("**", i):
            out, i = out + ".*", i + 2
        elif text[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif text[i] == "?":
            out, i = out + "[^/]", i + 1
        elif text[i] == "[":
            end = text.index("]", i)
            out, i = out + text[i:end + 1], end + 1
        else:
            out, i = out + re.escape(text[i]), i + 1
    return re.compile(out)


def _rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), _pattern(line.removeprefix("!"))))
    return rules


def in_context(path: str) -> bool:
    """Whether `path` (relative to the repository) reaches the build: the last rule matching it or a parent wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    included = True
    for negated, pattern in _rules():
        if any(pattern.fullmatch(prefix) for prefix in prefixes):
            included = negated
    return included


def _copied_sources() -> list[str]:
    sources = []
    for line in (REPO / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(word.startswith("--from") for word in words):
            sources += [word for word in words[1:-1] if not word.startswith("--")]
    return sources


def test_everything_the_dockerfile_copies_is_in_the_context() -> None:
    sources = _copied_sources()
    assert {"pyproject.toml", "requirements/lock.txt", "app", "templates", "static", "migrations"} <= set(sources)
    for source in sources:
        root = REPO / source
        assert root.exists(), f"the Dockerfile copies {source}, which does not exist"
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        left_out = [str(p.relative_to(REPO)) for p in files if not in_context(str(p.relative_to(REPO)))]
        assert not left_out, f".dockerignore leaves out files the Dockerfile copies: {left_out[:5]}"


@pytest.mark.parametrize("path", [
    ".env", ".git/HEAD", ".venv/bin/python", "data/prefloop.db", "data/dev-secret-key", "checkpoints/rm/model.safetensors",
    "bench/out/report.json", "app/__pycache__/main.cpython-311.pyc", ".pytest_cache/v/cache", ".mypy_cache/x.json",
    "app/.env", "tests/conftest.py", "prefloop.egg-info/PKG-INFO", ".venv-floors/bin/python",
])
def test_secrets_data_and_caches_stay_out(path: str) -> None:
    assert not in_context(path)
