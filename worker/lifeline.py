"""A worker started beside the server (`prefloop serve --with-worker`) ends when the server ends, however it ends.

The server hands the worker the read end of a pipe whose write end only the server holds. The kernel closes that
write end when the server exits — cleanly, by SIGKILL or by the OOM killer — and the read end then reports end of
file. A watcher thread blocks on that read: end of file asks the job loop to stop (a running job checkpoints, as
on SIGTERM), and should the process still be alive after a grace period it exits hard, so a worker never outlives
its server. Portable to every POSIX system, unlike Linux's parent-death signal.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import threading

log = logging.getLogger("prefloop.worker")

ENV_VAR = "PREFLOOP_LIFELINE_FD"
# Exit status of a worker that had to be cut off: 128 + SIGTERM, as if the signal had ended it.
_CUT_OFF_STATUS = 143


def lifeline_fd(environ: dict[str, str] | os._Environ[str] | None = None) -> int | None:
    """The inherited pipe's descriptor from the environment, or None when the worker runs on its own."""
    raw = (environ if environ is not None else os.environ).get(ENV_VAR, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ValueError(f"{ENV_VAR} must be a file descriptor number, got {raw!r}")
    return int(raw)


def watch(fd: int, stop: threading.Event, grace_seconds: float) -> threading.Thread:
    """Start the watcher: when the server's end closes, set `stop`; `grace_seconds` later, exit regardless."""

    def wait_for_the_server() -> None:
        try:
            while os.read(fd, 1):  # the server never writes: any byte is ignored, end of file is the signal
                pass
        except OSError:  # the descriptor is gone: treat it as the server gone
            pass
        log.warning("the server that started this worker has exited; stopping")
        stop.set()
        threading.Event().wait(grace_seconds)
        log.error("worker still running %.0fs after its server exited; exiting now", grace_seconds)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)  # where it was stuck, for the log
        os._exit(_CUT_OFF_STATUS)

    thread = threading.Thread(target=wait_for_the_server, name="lifeline", daemon=True)
    thread.start()
    return thread
