"""docs/architecture.md lists every module of `app/` and `worker/`, and lists nothing that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENTRY = re.compile(r"^- `((?:app|worker)/[\w/]+\.py)`:", re.MULTILINE)


def _modules() -> set[str]:
    return {str(p.relative_to(REPO)) for package in ("app", "worker") for p in (REPO / package).rglob("*.py")
            if "__pycache__" not in p.parts}


def test_the_module_map_matches_the_tree() -> None:
    listed = ENTRY.findall((REPO / "docs" / "architecture.md").read_text())
    assert len(listed) == len(set(listed)), "a module is listed twice"
    missing, stale = _modules() - set(listed), set(listed) - _modules()
    assert not missing, f"add to docs/architecture.md: {sorted(missing)}"
    assert not stale, f"remove from docs/architecture.md (no such module): {sorted(stale)}"
