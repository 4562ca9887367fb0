"""Test-only crash hook: `PREFLOOP_TEST_CRASH_AT=checkpoint-write[:<path substring>]` kills the worker with
SIGKILL in the middle of a checkpoint write (every file written to the temporary directory, before the
rename that publishes it), like a power cut. Unset, which is the default, it does nothing at all.

It wraps `worker.training.checkpoint._fsync_path`, the step that runs once per file and then once for the
temporary directory itself; the kill fires on the directory, so the write is as complete as it gets
without being published. Used by tests/worker/test_crash.py to prove the previous checkpoint survives.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

ENV_VAR = "PREFLOOP_TEST_CRASH_AT"


def install_from_env() -> bool:
    """Install the hook when the variable asks for it; True if installed."""
    spec = os.environ.get(ENV_VAR, "").strip()
    if not spec:
        return False
    point, _, match = spec.partition(":")
    if point != "checkpoint-write":
        raise ValueError(f"{ENV_VAR}={spec!r}: the only crash point is 'checkpoint-write[:<path substring>]'")
    from worker.training import checkpoint  # lazy: imports torch; only the crash hook needs it

    original = checkpoint._fsync_path

    def fsync_then_maybe_die(path: Path) -> Any:
        result = original(path)
        if ".tmp-" in path.name and path.is_dir() and match in str(path):
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    checkpoint._fsync_path = fsync_then_maybe_die
    return True
