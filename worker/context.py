"""What a handler gets: the job's identity and payload, progress reporting, and `should_stop`.

`should_stop()` only reads flags (set by the heartbeat thread and the signal handler), so training loops
can call it every step at no cost. Handlers raise `JobStopped` after checkpointing when it turns true,
and `JobFailure` for errors with a clear message (retryable or not).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.settings import Settings


class JobStopped(Exception):  # noqa: N818 - a control-flow signal, not an error
    """The handler stopped early because should_stop() said so (state saved where the handler has state)."""


class JobFailure(Exception):  # noqa: N818 - named for what the job did
    """The job failed with a clear message; `retryable=False` fails it at once (e.g. unwritable checkpoints)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass
class JobContext:
    """One claimed job as a handler sees it."""

    job_id: int
    kind: str
    project_id: int | None
    payload: dict[str, Any]
    attempt: int
    worker_id: str
    settings: Settings
    session_factory: sessionmaker[Session]
    shutdown: threading.Event = field(default_factory=threading.Event)
    cancel_requested: bool = False
    lost: bool = False
    fraction: float = 0.0
    message: str = ""
    progress_changed: threading.Event = field(default_factory=threading.Event)
    # The web request that enqueued the job (app.logs): the worker's log lines for this job carry it.
    request_id: str | None = None

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress; the heartbeat thread writes it to the job row."""
        self.fraction = min(max(float(fraction), 0.0), 1.0)
        self.message = message
        self.progress_changed.set()

    def should_stop(self) -> bool:
        """True when the job was cancelled, the worker is shutting down, or the job was taken from us."""
        return self.cancel_requested or self.lost or self.shutdown.is_set()

    @property
    def stop_reason(self) -> str | None:
        if self.lost:
            return "lost"
        if self.cancel_requested:
            return "cancel"
        if self.shutdown.is_set():
            return "shutdown"
        return None
