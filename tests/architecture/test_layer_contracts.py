"""The import-linter layer contracts hold on the code, and really catch a violation when one is planted."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the packages and of pyproject.toml (where the contracts live), free to break."""
    for package in ("app", "worker"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_code_keeps_every_contract() -> None:
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


@pytest.mark.parametrize(
    ("module", "planted", "contract"),
    [
        ("app/jobs/routes.py", "from app.jobs import queries as _q  # planted\n", "routes never query"),
        ("app/projects/service.py", "import worker.loop as _w  # planted\n", "app never imports the worker"),
        ("worker/training/groups.py", "import app.models as _m  # planted\n",
         "worker.training is pure torch: no app, no database"),
        ("app/auth/queries.py", "from app.auth import service as _s  # planted\n",
         "feature layers: entry points > service > queries > models"),
        ("app/quality/stats/agreement.py", "import sqlalchemy as _sa  # planted\n",
         "quality statistics are pure: no database, no web, no rest of the feature"),
        ("app/quality/stats/trust.py", "from app.quality import service as _s  # planted\n",
         "quality statistics are pure: no database, no web, no rest of the feature"),
    ],
)
def test_a_planted_violation_breaks_its_contract(tree: Path, module: str, planted: str, contract: str) -> None:
    path = tree / module
    path.write_text(path.read_text() + "\n" + planted)
    result = _lint(tree)
    assert result.returncode != 0
    assert f"{contract} BROKEN" in result.stdout
