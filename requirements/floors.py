"""Print the declared minimum of every runtime dependency (core + worker extra) as `name==version`.

`make floors` installs exactly these (plus what they need) to prove that pyproject.toml's floors are
true; torch keeps the project's pin, since older CPU builds are not on PyPI for every platform.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
FLOOR = re.compile(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*>=\s*([^,;\s]+)")
KEEP_PIN = {"torch": "2.13.0"}


def floors(extras: tuple[str, ...] = ("worker",)) -> list[str]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    pins = []
    for requirement in requirements:
        match = FLOOR.match(requirement)
        if match is None:
            raise SystemExit(f"{PYPROJECT}: dependency {requirement!r} declares no '>=' floor")
        name, extra, version = match.groups()
        pins.append(f"{name}{extra or ''}=={KEEP_PIN.get(name, version)}")
    return pins


if __name__ == "__main__":
    print("\n".join(floors(tuple(sys.argv[1:]) or ("worker",))))
