#!/usr/bin/env bash
# Rebuild requirements/lock.txt (`make lock`): resolve pyproject.toml's ranges afresh in a throwaway venv,
# with every extra, and pin exactly what resolved. Every install (make, .ci/run, Docker) reads the lock as
# pip constraints, so a new upstream release changes nothing until someone refreshes the lock, runs the
# suite on it and commits it.
# With --keep (or LOCK_KEEP=1 make lock) the current lock is passed as constraints, so every package already
# pinned keeps its version and only packages that are new (a dependency just added to pyproject.toml and what
# it pulls in) are resolved; the lock then gains lines and changes none.
set -euo pipefail
cd "$(dirname "$0")/.."
keep=()
if [[ "${1:-}" == "--keep" || "${LOCK_KEEP:-}" == "1" ]]; then
  keep=(-c "$PWD/requirements/lock.txt")
fi
PYTHON=${PYTHON:-python3}
TORCH_PIN=${TORCH_PIN:-torch==2.13.0}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q "${keep[@]}" --upgrade pip
# torch first, by its exact pin: a looser request would resolve to the newest (CUDA) build.
"$tmp/venv/bin/pip" install -q "${keep[@]}" "$TORCH_PIN"
"$tmp/venv/bin/pip" install -q "${keep[@]}" '.[worker,dev,lora,bench]'
{
  echo "# prefloop's lock: the exact versions the suite passed with. Installed as pip constraints:"
  echo "#   pip install -c requirements/lock.txt -e '.[worker,dev]'"
  echo "# Regenerate with 'make lock' (requirements/refresh-lock.sh), never by hand."
  echo "# Python $("$tmp/venv/bin/python" -c 'import platform; print(platform.python_version())'), $(uname -m)."
  # A local build label (+cpu) is dropped so the same pin admits the CUDA build of that release (GPU image).
  "$tmp/venv/bin/pip" freeze --all --exclude prefloop | sed -E 's/^(torch==[^+]+)\+.*/\1/' | LC_ALL=C sort -f
} > requirements/lock.txt.new
mv requirements/lock.txt.new requirements/lock.txt
echo "wrote requirements/lock.txt ($(grep -vc '^#' requirements/lock.txt) pins)"
