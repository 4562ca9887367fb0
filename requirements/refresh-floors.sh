#!/usr/bin/env bash
# Rebuild requirements/floors.txt (`make floors-lock`): the declared minimum of every runtime dependency
# (requirements/floors.py reads them from pyproject.toml), what those minimums need, and the test runner,
# pinned exactly, so `make floors` installs the same set on every machine and every day.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
lock_pin() { grep -iE "^$1==" requirements/lock.txt; }
"$tmp/venv/bin/pip" install -q "$(lock_pin pip)"
"$tmp/venv/bin/pip" install -q torch==2.13.0
# shellcheck disable=SC2046
"$tmp/venv/bin/pip" install -q $("$PYTHON" requirements/floors.py worker) "$(lock_pin pytest)" "$(lock_pin pytest-timeout)"
"$tmp/venv/bin/pip" check
{
  echo "# The declared floors of pyproject.toml, installed exactly by 'make floors' (regenerate: 'make floors-lock')."
  "$tmp/venv/bin/pip" freeze --all | sed -E 's/^(torch==[^+]+)\+.*/\1/' | LC_ALL=C sort -f
} > requirements/floors.txt.new
mv requirements/floors.txt.new requirements/floors.txt
echo "wrote requirements/floors.txt"
