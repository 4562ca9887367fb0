"""`prefloop users create|list`, `prefloop tokens create|list|revoke` and `prefloop links invite|reset`."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from app.accounts import service
from app.auth import service as auth
from app.console import JsonFlag, cli_session, emit, fail
from app.errors import DomainError
from app.settings import get_settings

users_cli = typer.Typer(help="Users.", no_args_is_help=True)
tokens_cli = typer.Typer(help="API tokens: create (shown once), list, revoke.", no_args_is_help=True)
links_cli = typer.Typer(help="One-time invite and password-reset links.", no_args_is_help=True)


def register(cli: typer.Typer) -> None:
    cli.add_typer(users_cli, name="users")
    cli.add_typer(tokens_cli, name="tokens")
    cli.add_typer(links_cli, name="links")


@users_cli.command("create")
def users_create(
    email: str,
    role: Annotated[str, typer.Option(help="admin or annotator")] = "annotator",
    name: Annotated[str | None, typer.Option(help="display name")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create a user; without --password-stdin a one-time password is generated and printed once."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    try:
        with cli_session() as db:
            created = auth.create_user(db, email, role, display_name=name, password=password)
            out = {"id": created.user.id, "email": created.user.email, "role": created.user.role}
            if created.password:
                out["password"] = created.password
    except auth.AuthError as exc:
        fail(str(exc))
    text = f"created {out['email']} ({out['role']}), id {out['id']}"
    if "password" in out:
        text += f"\none-time password (shown once): {out['password']}"
    emit(out, as_json, text)


@users_cli.command("list")
def users_list(as_json: JsonFlag = False) -> None:
    """List users."""
    with cli_session() as db:
        rows = [
            {"id": u.id, "email": u.email, "role": u.role, "active": u.is_active} for u in auth.list_users(db)
        ]
    emit(rows, as_json, "\n".join(f"{r['id']}\t{r['email']}\t{r['role']}\t{r['active']}" for r in rows))


def _user(db: Any, email: str) -> Any:
    user = auth.find_user_by_email(db, email)
    if user is None:
        fail(f"no user with e-mail {email.strip().lower()}")
    return user


@tokens_cli.command("create")
def tokens_create(
    email: str,
    name: str = "cli",
    scope: Annotated[str, typer.Option(help="full, or read (GET only)")] = "full",
    days: Annotated[int | None, typer.Option(help="expire after this many days (default: never)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an API token for EMAIL and print it once."""
    try:
        with cli_session() as db:
            token = service.create_token(db, _user(db, email), name, scope, days)
    except DomainError as exc:
        fail(str(exc))
    emit({"email": email.strip().lower(), "token": token, "scope": scope}, as_json, token)


@tokens_cli.command("list")
def tokens_list(email: str, as_json: JsonFlag = False) -> None:
    """List EMAIL's tokens (never their secrets): scope, last use, expiry, revocation."""
    with cli_session() as db:
        rows = [service.token_view(t) for t in service.tokens(db, _user(db, email))]
    emit(rows, as_json, "\n".join(
        f"{r['id']}\t{r['prefix']}…\t{r['name']}\t{r['scope']}\tlast used {r['last_used_at'] or 'never'}\t"
        f"{'revoked' if r['revoked_at'] else 'expires ' + str(r['expires_at'] or 'never')}" for r in rows
    ) or "no tokens")


@tokens_cli.command("revoke")
def tokens_revoke(token_id: int, as_json: JsonFlag = False) -> None:
    """Revoke the token with id TOKEN_ID (see `tokens list`); it is refused from now on."""
    try:
        with cli_session() as db:
            token = service.revoke_token(db, _admin(db, None), token_id)
            out = {"id": token.id, "revoked_at": service.token_view(token)["revoked_at"]}
    except DomainError as exc:
        fail(str(exc))
    emit(out, as_json, f"token {token_id} revoked")


def _issued(issued: Any, who: str, as_json: bool) -> None:
    url = get_settings().base_url.rstrip("/") + issued.path
    emit({"for": who, "url": url, "expires_at": issued.expires_at.isoformat()}, as_json,
         f"one-time link for {who} (valid until {issued.expires_at:%Y-%m-%d %H:%M} UTC; shown once):\n{url}")


def _admin(db: Any, email: str | None) -> Any:
    if email:
        return _user(db, email)
    admin = next((u for u in auth.list_users(db) if u.is_admin and u.is_active), None)
    if admin is None:
        fail("no admin account: create one first")
    return admin


@links_cli.command("invite")
def links_invite(
    email: str,
    role: Annotated[str, typer.Option(help="admin or annotator")] = "annotator",
    hours: Annotated[int, typer.Option(help="how long the link works")] = 72,
    by: Annotated[str | None, typer.Option(help="the inviting admin's e-mail (default: the first admin)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Invite EMAIL: a one-time link with which they choose their name and password."""
    try:
        with cli_session() as db:
            issued = service.issue_invite(db, _admin(db, by), email, role, hours)
    except DomainError as exc:
        fail(str(exc))
    _issued(issued, email.strip().lower(), as_json)


@links_cli.command("reset")
def links_reset(
    email: str,
    hours: Annotated[int, typer.Option(help="how long the link works")] = 24,
    by: Annotated[str | None, typer.Option(help="the issuing admin's e-mail (default: the first admin)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """A one-time link with which EMAIL sets a new password."""
    try:
        with cli_session() as db:
            issued = service.issue_reset_link(db, _admin(db, by), _user(db, email), hours)
    except DomainError as exc:
        fail(str(exc))
    _issued(issued, email.strip().lower(), as_json)
