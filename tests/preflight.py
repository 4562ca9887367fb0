"""What `make test` needs from the machine, checked in its first second with the standard library only.

Each missing piece is reported in one line with the command that installs it; as root on Debian the
browser is installed here directly (as CI does). Exit status 2 when something is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
PG_ADMIN_URL = os.environ.get("PREFLOOP_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SHARED_DATA = Path(os.environ.get("PREFLOOP_SHARED_DATA", REPO.parent / "shared" / "data"))


def _can_apt() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def check_venv() -> str | None:
    try:
        import ensurepip  # noqa: F401  (Debian splits it out into python3-venv)
    except ImportError:
        return "Python's venv module cannot bootstrap pip: sudo apt-get install python3-venv"
    return None


def check_chromium() -> str | None:
    if Path(CHROMIUM).exists():
        return None
    if _can_apt():
        print("make test: installing Debian's chromium (apt-get, as root) ...", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False, env=env,
                       stdout=subprocess.DEVNULL)
        if Path(CHROMIUM).exists():
            return None
    return f"browser tests need Debian's chromium at {CHROMIUM}: sudo apt-get install chromium"


def check_postgres() -> str | None:
    parts = urlsplit(PG_ADMIN_URL)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    hint = ("start it (Debian: sudo apt-get install postgresql), or set PREFLOOP_TEST_PG_ADMIN_URL to a role "
            "that may create databases")
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return f"no Postgres answers at {host}:{port} (PREFLOOP_TEST_PG_ADMIN_URL={PG_ADMIN_URL}): {hint}"
    if shutil.which("psql"):
        probe = subprocess.run(
            ["psql", PG_ADMIN_URL, "-Atc", "select rolcreatedb or rolsuper from pg_roles where rolname = current_user"],
            capture_output=True, text=True, timeout=10, check=False,
        )
        if probe.returncode != 0:
            first = (probe.stderr.strip().splitlines() or ["no answer"])[0]
            return f"cannot sign in to Postgres as {PG_ADMIN_URL} ({first}): {hint}"
        if probe.stdout.strip() != "t":
            return f"the role in {PG_ADMIN_URL} may not create databases: {hint}"
    return None


def check_shared_data() -> str | None:
    if (SHARED_DATA / "instructgpt-samples").is_dir():
        return None
    message = f"real test data missing at {SHARED_DATA} (set PREFLOOP_SHARED_DATA to the folder holding instructgpt-samples/)"
    if os.environ.get("CI"):
        return message
    print(f"make test: note: {message}; the tests that read it will skip", file=sys.stderr)
    return None


def main() -> int:
    problems = [p for p in (check_venv(), check_chromium(), check_postgres(), check_shared_data()) if p]
    for problem in problems:
        print(f"make test: {problem}", file=sys.stderr)
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
