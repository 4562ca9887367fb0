"""One error vocabulary: outside app/web/errors.py no module of app/ raises (or imports, to raise or to
translate into) an HTTPException; they raise the domain errors of app/errors.py. The scan really fails on a
violation planted in a copy of the tree."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The one place that maps errors to responses (it handles the HTTPException that routing itself raises).
ALLOWED = {Path("app/web/errors.py")}


def _is_http_exception(node: ast.expr | None) -> bool:
    """`HTTPException`, `HTTPException(...)`, `fastapi.HTTPException(...)` and the like."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Name):
        return node.id == "HTTPException"
    return isinstance(node, ast.Attribute) and node.attr == "HTTPException"


def violations(root: Path) -> list[str]:
    """`module:line` of every HTTPException raised or imported under root/app, outside the allowed module."""
    found = []
    for path in sorted((root / "app").rglob("*.py")):
        relative = path.relative_to(root)
        if relative in ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Raise) and _is_http_exception(node.exc):
                found.append(f"{relative.as_posix()}:{node.lineno}: raises HTTPException")
            elif isinstance(node, ast.ImportFrom) and any(a.name == "HTTPException" for a in node.names):
                found.append(f"{relative.as_posix()}:{node.lineno}: imports HTTPException")
    return found


def test_no_module_raises_an_http_exception() -> None:
    found = violations(REPO)
    assert not found, "raise a domain error from app/errors.py instead:\n" + "\n".join(found)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@pytest.mark.parametrize(
    ("planted", "expected"),
    [
        ("\n\ndef _planted() -> None:\n    raise HTTPException(status_code=404, detail='gone')\n", "raises"),
        ("\n\ndef _planted() -> None:\n    import fastapi\n    raise fastapi.HTTPException(404)\n", "raises"),
        ("\nfrom fastapi import HTTPException as _Planted\n", "imports"),
    ],
)
def test_a_planted_violation_is_caught(tree: Path, planted: str, expected: str) -> None:
    module = tree / "app" / "jobs" / "routes.py"
    lines = module.read_text(encoding="utf-8").count("\n")
    module.write_text(module.read_text(encoding="utf-8") + planted, encoding="utf-8")
    found = violations(tree)
    assert len(found) == 1, found
    where, line, what = found[0].split(":")
    assert where == "app/jobs/routes.py" and int(line) > lines and what.strip().startswith(expected)


def test_the_error_mapping_itself_is_allowed(tree: Path) -> None:
    assert "HTTPException" in (tree / "app" / "web" / "errors.py").read_text(encoding="utf-8")
    assert violations(tree) == []
