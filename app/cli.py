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

from app import __version__
from app.accounts import commands as account_commands
from app.console import JsonFlag, cli_session, emit, fail
from app.demo import commands as demo_commands
from app.exports import commands as export_commands
from app.imports import commands as import_commands
from app.members import commands as member_commands
from app.projects import commands as project_commands
from app.quality import commands as quality_commands
from app.settings import SettingsError, get_settings

cli = typer.Typer(help="prefloop: RLHF preference labeling with a closed training loop.", no_args_is_help=True)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
users_cli = typer.Typer(help="Users.", no_args_is_help=True)
projects_cli = typer.Typer(help="Projects.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(users_cli, name="users")
cli.add_typer(projects_cli, name="projects")

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
    from app.migrate import upgrade

    settings = get_settings()
    upgrade(settings.database_url, revision)
    typer.echo(f"database at {revision}: {settings.database_url.split('@')[-1]}")


@db_cli.command("check")
def db_check() -> None:
    """Fail if the ORM models and the migrations disagree."""
    from app.migrate import check

    check(get_settings().database_url)
    typer.echo("no schema drift")


@users_cli.command("create")
def users_create(
    email: str,
    role: Annotated[str, typer.Option(help="admin or annotator")] = "annotator",
    name: Annotated[str | None, typer.Option(help="display name")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create a user; without --password-stdin a one-time password is generated and printed once."""
    from app.auth import service

    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    try:
        with cli_session() as db:
            created = service.create_user(db, email, role, display_name=name, password=password)
            out = {"id": created.user.id, "email": created.user.email, "role": created.user.role}
            if created.password:
                out["password"] = created.password
    except service.AuthError as exc:
        fail(str(exc))
    text = f"created {out['email']} ({out['role']}), id {out['id']}"
    if "password" in out:
        text += f"\none-time password (shown once): {out['password']}"
    emit(out, as_json, text)


@users_cli.command("list")
def users_list(as_json: JsonFlag = False) -> None:
    """List users."""
    from app.auth import service

    with cli_session() as db:
        rows = [
            {"id": u.id, "email": u.email, "role": u.role, "active": u.is_active} for u in service.list_users(db)
        ]
    emit(rows, as_json, "\n".join(f"{r['id']}\t{r['email']}\t{r['role']}\t{r['active']}" for r in rows))


@projects_cli.command("create")
def projects_create(
    name: str,
    k_min: int = 4,
    k_max: int = 9,
    annotations_per_prompt: int = 1,
    guidelines: str = "",
    as_json: JsonFlag = False,
) -> None:
    """Create a project and print its id."""
    from pydantic import ValidationError

    from app.projects import service
    from app.projects.schemas import ProjectCreate

    try:
        data = ProjectCreate(
            name=name, k_min=k_min, k_max=k_max, annotations_per_prompt=annotations_per_prompt, guidelines=guidelines
        )
        with cli_session() as db:
            project = service.create(db, data, None)
            out = {"id": project.id, "name": project.name}
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    except service.ProjectError as exc:
        fail(str(exc))
    emit(out, as_json, str(out["id"]))


@projects_cli.command("list")
def projects_list(as_json: JsonFlag = False, archived: bool = False) -> None:
    """List projects."""
    from app.projects import service

    with cli_session() as db:
        rows = [
            {"id": p.id, "name": p.name, "k_min": p.k_min, "k_max": p.k_max,
             "annotations_per_prompt": p.annotations_per_prompt, "archived": p.archived_at is not None}
            for p in service.list_projects(db, include_archived=archived)
        ]
    emit(rows, as_json, "\n".join(f"{r['id']}\t{r['name']}" for r in rows) or "no projects")


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
    import uvicorn

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
