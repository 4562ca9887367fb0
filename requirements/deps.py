"""Print the project's dependencies from pyproject.toml, one requirement a line, for a cached install layer.

    python requirements/deps.py [EXTRA...] > deps.txt
    pip install -c requirements/lock.txt -r deps.txt

The Dockerfile installs these before it copies the code, so a code change reuses the dependency layer; the
lock (constraints) decides the versions. Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    """The core dependencies followed by those of each extra named, in order, without duplicates."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise SystemExit(f"unknown extra(s) {', '.join(unknown)}; pyproject.toml has {', '.join(sorted(optional))}")
    lines: list[str] = []
    for requirement in [*project.get("dependencies", []), *(r for extra in extras for r in optional[extra])]:
        if requirement not in lines:
            lines.append(requirement)
    return lines


def main(argv: list[str]) -> None:
    print("\n".join(requirements(PYPROJECT, argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
