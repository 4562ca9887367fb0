"""A worker holding a lifeline stops when the other end closes, and is cut off if it cannot stop in time."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from worker import lifeline

# The child: watches the inherited descriptor, then either stops cleanly or hangs after the stop request
# (standing in for a worker stuck in a database wait or in a library's shutdown).
_CHILD = textwrap.dedent(
    """
    import sys, threading, time
    from worker import lifeline

    stop = threading.Event()
    lifeline.watch(lifeline.lifeline_fd(), stop, grace_seconds=float(sys.argv[2]))
    print("watching", flush=True)
    stop.wait()
    if sys.argv[1] == "hang":
        time.sleep(600)
    print("stopped cleanly", flush=True)
    """
)


def _start_child(mode: str, grace: float) -> tuple[subprocess.Popen[str], int]:
    read_end, write_end = os.pipe()
    child = subprocess.Popen([sys.executable, "-c", _CHILD, mode, str(grace)], pass_fds=(read_end,),
                             env={**os.environ, lifeline.ENV_VAR: str(read_end)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(read_end)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "watching"
    return child, write_end


def test_closing_the_other_end_stops_the_worker_cleanly() -> None:
    child, write_end = _start_child("clean", grace=30)
    try:
        time.sleep(0.3)
        assert child.poll() is None, "the worker stopped while its server was still there"
        os.close(write_end)  # what the kernel does when the server dies, however it dies
        out, err = child.communicate(timeout=20)
    finally:
        child.kill()
    assert child.returncode == 0
    assert "stopped cleanly" in out
    assert "has exited; stopping" in err


def test_a_worker_that_cannot_stop_is_cut_off_after_the_grace_period() -> None:
    child, write_end = _start_child("hang", grace=1)
    started = time.monotonic()
    os.close(write_end)
    try:
        _out, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 143
    assert time.monotonic() - started >= 1
    assert "exiting now" in err
    assert "most recent call first" in err  # the stuck threads' stacks are in the log


@pytest.mark.parametrize("raw", ["", "  "])
def test_no_lifeline_when_the_worker_runs_on_its_own(raw: str) -> None:
    assert lifeline.lifeline_fd({lifeline.ENV_VAR: raw}) is None
    assert lifeline.lifeline_fd({}) is None


def test_a_malformed_descriptor_is_an_error_that_names_the_variable() -> None:
    with pytest.raises(ValueError, match=lifeline.ENV_VAR):
        lifeline.lifeline_fd({lifeline.ENV_VAR: "three"})
