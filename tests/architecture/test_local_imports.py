"""Imports live at the top of a module: a function (or method) of app/ or worker/ imports inside its body only
a heavy or optional dependency (torch, transformers, pyarrow, the web stack kept out of CLI start-up, ...),
and says why with a `# lazy: <reason>` comment on the import's lines. The scan really fails on an unmarked
local import."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "worker")
MARK = "# lazy:"


def unmarked_local_imports(source: str, name: str) -> list[str]:
    """`name:line` of every import inside a function of source whose lines carry no `# lazy:` comment."""
    lines = source.splitlines()
    found = set()
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Import | ast.ImportFrom):
                text = lines[node.lineno - 1:(node.end_lineno or node.lineno)]
                if not any(MARK in line for line in text):
                    found.add((name, node.lineno))
    return [f"{module}:{line}" for module, line in sorted(found)]


def violations(root: Path) -> list[str]:
    """Unmarked function-local imports of every module under root's app/ and worker/."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            found += unmarked_local_imports(path.read_text(encoding="utf-8"), str(path.relative_to(root)))
    return found


def test_function_local_imports_are_marked_lazy() -> None:
    found = violations(REPO)
    assert not found, "function-local imports without a `# lazy: <reason>` comment:\n" + "\n".join(found)


def test_scan_flags_an_unmarked_local_import(tmp_path: Path) -> None:
    module = tmp_path / "app" / "planted.py"
    module.parent.mkdir()
    module.write_text(
        "import os\n\n\n"
        "def marked():\n"
        "    import torch  # lazy: optional\n"
        "    from pyarrow import (  # lazy: optional\n"
        "        parquet,\n"
        "    )\n\n\n"
        "class Thing:\n"
        "    def method(self):\n"
        "        import json\n"
        "        return json\n\n\n"
        "async def coroutine():\n"
        "    from pathlib import Path\n",
        encoding="utf-8",
    )
    assert violations(tmp_path) == ["app/planted.py:13", "app/planted.py:18"]
