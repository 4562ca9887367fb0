"""The `prefloop` command line: serve, db, users, tokens, projects, import, export, demo (+ worker commands).

Every command that prints data accepts `--json`. Worker (torch) commands are added through the
`prefloop.cli` entry point so this module never imports the worker package.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from importlib.metadata import entry_points
from types import FrameType
from typing import Annotated

import typer
import uvicorn

from app import __version__
from app.accounts import commands as account_commands
from app.console import fail
from app.demo import commands as demo_commands
from app.exports import commands as export_commands
from app.imports import commands as import_commands
from app.members import commands as member_commands
from app.projects import commands as project_commands
from app.quality import commands as quality_commands
from app.settings import SettingsError, get_settings

cli = typer.Typer(help="prefloop: RLHF preference labeling with a closed training loop.", no_args_is_help=True)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"prefloop {__version__}")
        raise typer.Exit()


@cli.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """prefloop: RLHF preference labeling with a closed training loop."""


@db_cli.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Create or migrate the schema (Alembic) to REVISION."""
    from app.migrate import upgrade  # lazy: Alembic costs a fifth of the CLI's start-up (--help)

    settings = get_settings()
    upgrade(settings.database_url, revision)
    typer.echo(f"database at {revision}: {settings.database_url.split('@')[-1]}")


@db_cli.command("check")
def db_check() -> None:
    """Fail if the ORM models and the migrations disagree."""
    from app.migrate import check  # lazy: Alembic costs a fifth of the CLI's start-up (--help)

    check(get_settings().database_url)
    typer.echo("no schema drift")


# The worker's end of the lifeline pipe (worker/lifeline.py): the app names the variable, the worker reads it.
_LIFELINE_ENV = "PREFLOOP_LIFELINE_FD"


def _start_worker() -> tuple[subprocess.Popen[bytes], int]:
    """Start `prefloop worker` holding the read end of a pipe whose write end stays in this process only.

    However this process ends (even SIGKILL or the OOM killer), the kernel closes the write end; the worker sees
    end of file and stops. The write end (returned beside the process) is never written and never inherited
    (pipes are non-inheritable)."""
    read_end, write_end = os.pipe()
    try:
        worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"],
                                  env={**os.environ, _LIFELINE_ENV: str(read_end)}, pass_fds=(read_end,))
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return worker, write_end


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker (it checkpoints a running job and exits), kill it if it takes more than a minute."""
    if worker.poll() is not None:
        return
    worker.terminate()
    try:
        worker.wait(timeout=60)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


@cli.command("serve")
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    with_worker: Annotated[bool, typer.Option("--with-worker", help="run one worker beside the server")] = False,
    reload: bool = False,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(help="addresses of the TLS proxy whose X-Forwarded-Proto/For are trusted, or '*' "
                          "(default: $FORWARDED_ALLOW_IPS, else 127.0.0.1,::1)"),
    ] = None,
) -> None:
    """Serve the web app (uvicorn)."""
    try:
        get_settings().validate_for_serving()
    except SettingsError as exc:
        fail(str(exc))
    worker: subprocess.Popen[bytes] | None = None
    lifeline = -1
    if with_worker:
        worker, lifeline = _start_worker()
        running = worker

        # Uvicorn handles SIGTERM itself, restores the handler it found, then raises the signal again, so a
        # `finally` below never runs on SIGTERM: the handler uvicorn finds (and restores) is this one.
        def stop_then_die(signum: int, _frame: FrameType | None) -> None:
            _stop_worker(running)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)  # exit by the signal, as a plain uvicorn would

        signal.signal(signal.SIGTERM, stop_then_die)
    try:
        uvicorn.run("app.main:create_app", factory=True, host=host, port=port, reload=reload, proxy_headers=True,
                    forwarded_allow_ips=forwarded_allow_ips)
    finally:  # a normal return, Ctrl-C (KeyboardInterrupt) or an error at start-up
        if worker is not None:
            _stop_worker(worker)
            os.close(lifeline)


def _register_commands() -> None:
    """The app's feature commands, then the worker's, which arrive through the `prefloop.cli` entry point
    (the app never imports the worker: without the [worker] extra its commands are simply absent)."""
    for module in (account_commands, import_commands, export_commands, demo_commands, project_commands,
                   quality_commands, member_commands):
        module.register(cli)
    for entry in entry_points(group="prefloop.cli"):
        entry.load()(cli)


_register_commands()


def main() -> None:
    """The `prefloop` script and `python -m app`: one program name in help and errors either way."""
    cli(prog_name="prefloop")


if __name__ == "__main__":
    main()
