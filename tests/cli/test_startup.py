"""The CLI starts without the web framework or Alembic: commands that need them import them (issue: a
100k-row export spent seconds importing modules it never used)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("fastapi", "starlette", "alembic", "torch", "transformers", "pyarrow")


@pytest.mark.parametrize("argv", [["--help"], ["export", "--help"], ["import", "--help"]], ids=" ".join)
def test_cli_start_up_imports_no_heavy_module(argv: list[str]) -> None:
    probe = (
        "import json, sys\n"
        f"sys.argv = ['prefloop', *{argv!r}]\n"
        "import app.cli\n"
        "try:\n    app.cli.main()\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
