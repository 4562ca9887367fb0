"""`prefloop worker`: run the job loop (also `python -m worker`)."""

from __future__ import annotations

import os
import threading
from typing import Annotated

import typer

from app.settings import get_settings
from worker import lifeline

# How long a worker whose server has gone may take to checkpoint its job and exit before it is cut off.
LIFELINE_GRACE_SECONDS = 30.0


def cli(
    once: Annotated[bool, typer.Option("--once", help="Run the jobs that are ready, then exit.")] = False,
    poll_seconds: Annotated[float, typer.Option("--poll-seconds", min=0.05, help="Idle wait between polls.")] = 2.0,
    worker_id: Annotated[str, typer.Option("--worker-id", help="Name in the job log (default host:pid).")] = "",
    heartbeat_seconds: Annotated[float, typer.Option("--heartbeat-seconds", min=0.05)] = 5.0,
    stale_seconds: Annotated[
        float, typer.Option("--stale-seconds", min=0.1, help="Requeue running jobs whose heartbeat is this old.")
    ] = 60.0,
    kind: Annotated[list[str] | None, typer.Option("--kind", help="Only run jobs of this kind (repeatable).")] = None,
    no_scheduler: Annotated[bool, typer.Option("--no-scheduler", help="Do not enqueue scheduled loop jobs.")] = False,
) -> None:
    """Run the worker: claim jobs, train and sample, heartbeat; SIGTERM checkpoints and exits cleanly."""
    from app.logs import configure_logging, resolve_format  # lazy: pulls starlette into CLI start-up
    from worker.loop import WorkerConfig, run_worker  # lazy: pulls starlette into CLI start-up

    settings = get_settings()
    # Job progress goes to the jobs table; per-file download/save bars would only flood the worker's log.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging  # lazy: optional [worker] extra

    hf_logging.disable_progress_bar()
    configure_logging(settings.log_level, resolve_format(settings.log_format, settings.is_dev))
    try:
        config = WorkerConfig(worker_id=worker_id, poll_seconds=poll_seconds, heartbeat_seconds=heartbeat_seconds,
                              stale_seconds=stale_seconds, once=once, kinds=tuple(kind) if kind else None,
                              run_scheduler=not no_scheduler)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    shutdown = threading.Event()
    try:
        server_pipe = lifeline.lifeline_fd()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if server_pipe is not None:  # started by `prefloop serve --with-worker`: end with the server
        os.environ.pop(lifeline.ENV_VAR, None)
        lifeline.watch(server_pipe, shutdown, grace_seconds=LIFELINE_GRACE_SECONDS)
    processed = run_worker(settings, config, shutdown=shutdown)
    typer.echo(f"worker {config.worker_id} stopped after {processed} job(s)")
