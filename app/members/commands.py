"""`prefloop members list|add|remove PROJECT [EMAIL]`: who may see a members-only project."""

from __future__ import annotations

import typer

from app.console import JsonFlag, cli_session, emit, fail
from app.errors import DomainError
from app.members import service
from app.projects import service as projects

members_cli = typer.Typer(help="Project members (projects whose labeling.access is 'members').",
                          no_args_is_help=True)


def register(cli: typer.Typer) -> None:
    cli.add_typer(members_cli, name="members")


@members_cli.command("list")
def members_list(project_id: int, as_json: JsonFlag = False) -> None:
    """List the members of PROJECT_ID and its access rule."""
    try:
        with cli_session() as db:
            project = projects.get(db, project_id)
            access = "members" if service.members_only(project) else "all"
            rows = [m.to_dict() for m in service.members(db, project)]
    except DomainError as exc:
        fail(str(exc))
    text = "\n".join(f"{r['email']}\t{r['display_name']}\tsince {r['added_at']}" for r in rows) or "no members"
    note = "" if access == "members" else "\n(access is 'all': every annotator sees the project)"
    emit({"access": access, "members": rows}, as_json, text + note)


@members_cli.command("add")
def members_add(project_id: int, email: str, as_json: JsonFlag = False) -> None:
    """Admit the annotator EMAIL to PROJECT_ID (adding twice changes nothing)."""
    try:
        with cli_session() as db:
            member, created = service.add(db, projects.get(db, project_id), email, None)
    except DomainError as exc:
        fail(str(exc).removeprefix("email: "))
    emit({**member.to_dict(), "created": created}, as_json,
         f"{member.email} {'is now' if created else 'was already'} a member of project {project_id}")


@members_cli.command("remove")
def members_remove(project_id: int, email: str, as_json: JsonFlag = False) -> None:
    """Take EMAIL off PROJECT_ID (their rankings stay)."""
    try:
        with cli_session() as db:
            removed = service.remove(db, projects.get(db, project_id), email)
    except DomainError as exc:
        fail(str(exc).removeprefix("email: "))
    emit({"email": email.strip().lower(), "removed": removed}, as_json,
         f"{email.strip().lower()} {'removed from' if removed else 'was not a member of'} project {project_id}")
