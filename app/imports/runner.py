"""Uploads imported in the background: one import at a time on a thread of the web process.

The upload request only stores the file and a `running` import record, then hands the import to this
runner and answers at once; the upload page polls the record's progress. The runner reads the file twice
(check, then insert; see app.imports.service) with two short sessions of its own and one transaction for
all the inserts, so a crash leaves no rows. Imports a dead process left `running` are failed at start-up
(`recover`); a server told to stop interrupts the running import the same way.

A thread rather than a worker job: the embedded SQLite default runs with no worker at all, and the file is
already on this machine. One at a time, since on SQLite every import holds the single write lock anyway.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.db import unit_of_work
from app.imports import preview, service
from app.imports.schemas import ImportOptions, ImportOutcome
from app.projects import service as projects

log = logging.getLogger("prefloop.imports")

# Finished outcomes kept in memory for their report (the notes and hints are not stored on the record).
_KEEP_FINISHED = 50
_FAIL_ATTEMPTS, _FAIL_RETRY_S = 60, 2.0


class Interrupted(RuntimeError):
    """Raised inside an import when the server is stopping."""


@dataclass(frozen=True)
class Progress:
    """Where a running import is: `queued`, `checking` (lines read) or `importing` (prompts inserted)."""

    phase: str
    count: int = 0


@dataclass(frozen=True)
class Finished:
    """A finished import's outcome and the file's columns (for the failed report's hints)."""

    outcome: ImportOutcome
    columns: list[str] = field(default_factory=list)


class ImportRunner:
    """The web process's import thread: `submit` after the upload's record is committed, then poll `progress`."""

    def __init__(self, session_factory: sessionmaker[Session], upload_dir: Path) -> None:
        self.upload_dir = upload_dir
        self._factory = session_factory
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._progress: dict[int, Progress] = {}
        self._finished: OrderedDict[int, Finished] = OrderedDict()
        self._futures: dict[int, Future[None]] = {}

    def recover(self) -> int:
        """At start-up: fail the imports a dead process left running and delete their stored uploads.

        A database that is down at start-up is not fatal: the next start-up fails them instead."""
        try:
            with unit_of_work(self._factory) as db:
                failed = service.fail_interrupted(db)
        except SQLAlchemyError:
            log.warning("could not check for interrupted imports (database unavailable)")
            return 0
        if self.upload_dir.is_dir():
            for leftover in self.upload_dir.glob("*.upload"):
                leftover.unlink(missing_ok=True)
        if failed:
            log.warning("marked %d interrupted import(s) failed", failed)
        return failed

    def submit(self, import_id: int, path: Path, options: ImportOptions) -> None:
        """Run the import of `path` (deleted afterwards) into the committed record `import_id`."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefloop-import")
            self._progress[import_id] = Progress("queued")
            # In the request's context, so the import's log lines carry its request id (app.logs).
            self._futures[import_id] = self._pool.submit(contextvars.copy_context().run, self._run, import_id, path,
                                                         options)
        log.info("import %d started (%s)", import_id, path.name, extra={"event": "import.started", "import_id": import_id})

    def progress(self, import_id: int) -> Progress | None:
        """The live progress of an import this process runs; None once finished (or never seen)."""
        with self._lock:
            return self._progress.get(import_id)

    def finished(self, import_id: int) -> Finished | None:
        """The full outcome of an import this process finished recently."""
        with self._lock:
            return self._finished.get(import_id)

    def wait(self, import_id: int, timeout: float | None = None) -> None:
        """Block until the import finishes (the CLI-style callers and tests; the page polls instead)."""
        with self._lock:
            future = self._futures.get(import_id)
        if future is not None:
            future.result(timeout)

    def shutdown(self) -> None:
        """Stop: interrupt the running import (it rolls back and is marked failed), drop queued ones (the next
        start-up fails them)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            self._stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            self._stop.clear()

    def _report(self, import_id: int, phase: str, count: int) -> None:
        if self._stop.is_set():
            raise Interrupted(service.INTERRUPTED)
        with self._lock:
            self._progress[import_id] = Progress(phase, count)

    def _run(self, import_id: int, path: Path, options: ImportOptions) -> None:
        finished: Finished | None = None
        try:
            finished = self._import(import_id, path, options)
        except Exception as exc:
            if isinstance(exc, SQLAlchemyError):
                # One line, not the statement: a failed batch INSERT would log thousands of bound values.
                cause = getattr(exc, "orig", None) or exc
                log.error("import %d stopped on a database error: %s", import_id,
                          (str(cause).splitlines() or [type(cause).__name__])[0])
            elif not isinstance(exc, Interrupted):
                log.exception("import %d failed", import_id)
            finished = self._fail(import_id, service.INTERRUPTED if isinstance(exc, Interrupted)
                                  else f"the import stopped on an error: {type(exc).__name__}; nothing was imported")
        finally:
            path.unlink(missing_ok=True)
            if finished is not None:
                done = finished.outcome
                log.info("import %d %s: %s", import_id, "finished" if done.ok else "refused", done.counts,
                         extra={"event": "import.finished", "import_id": import_id, "ok": done.ok,
                                "counts": done.counts, "issues": done.issue_count, "file_format": done.file_format})
            with self._lock:
                self._progress.pop(import_id, None)
                self._futures.pop(import_id, None)
                if finished is not None:
                    self._finished[import_id] = finished
                    while len(self._finished) > _KEEP_FINISHED:
                        self._finished.popitem(last=False)

    def _import(self, import_id: int, path: Path, options: ImportOptions) -> Finished:
        def report(phase: str, count: int) -> None:
            self._report(import_id, phase, count)

        report("checking", 0)
        # Short sessions around the check: it reads only the file, and on SQLite a session holds the write lock.
        with unit_of_work(self._factory) as db:
            record = service.get_import_for_run(db, import_id)
            rules = service.rules_of(projects.get(db, record.project_id))
            name, fmt = record.file_name, service.known_format(record.file_format)
        with path.open("rb") as source:
            checked = service.check_file(source, name, fmt, options, rules, report)
        with unit_of_work(self._factory) as db:
            record = service.get_import_for_run(db, import_id)
            if not checked.ok:
                outcome = service.fail_import(db, record, checked)
                with path.open("rb") as source:
                    columns = preview.preview(source.read(preview.PREVIEW_BYTES), name).columns
                return Finished(outcome, columns)
            report("importing", 0)
            project = projects.get(db, record.project_id)
            with path.open("rb") as source:
                outcome = service.insert_checked(db, project, record, source, options, checked, report)
        return Finished(outcome)

    def _fail(self, import_id: int, reason: str) -> Finished | None:
        # The database may be what failed (a Postgres restart): retry for a while so the record says failed as
        # soon as it is back; if it never comes back the record stays `running` and the next start-up fails it.
        for attempt in range(_FAIL_ATTEMPTS):
            try:
                with unit_of_work(self._factory) as db:
                    record = service.get_import_for_run(db, import_id)
                    service.fail_unfinished(db, record, reason)
                    return Finished(service.outcome_of(record))
            except SQLAlchemyError:
                if attempt == _FAIL_ATTEMPTS - 1 or self._stop.wait(_FAIL_RETRY_S):
                    break
        log.error("could not mark import %d failed (database unavailable)", import_id)
        return None
