"""What every `prefloop` command shares: the `--json` flag, one-line errors, output, and a database session.

Feature command modules (app/*/commands.py, worker/commands) import these at load time; app/cli.py assembles
the commands. Nothing here imports a feature, so no command module needs to import app.cli.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.db import create_db_engine, make_session_factory, unit_of_work
from app.settings import get_settings

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a clear error to stderr and exit non-zero."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    """Print `data` as JSON, or `text` for people."""
    if as_json or text is None:
        typer.echo(json.dumps(data, indent=None if as_json else 2, default=str))
    else:
        typer.echo(text)


def require_migrated(engine: Engine, database_url: str) -> None:
    """Stop with one line, not a traceback, when the schema is missing or behind the installed migrations."""
    from app.migrate import is_at_head  # lazy: Alembic costs a fifth of the CLI's start-up (--help)

    if not is_at_head(engine):
        where = database_url.split("@")[-1]
        fail(f"the database {where} is not at the current schema: run `prefloop db upgrade` first")


@contextmanager
def cli_session() -> Iterator[Session]:
    """One committed unit of work for a CLI command."""
    settings = get_settings()
    engine = create_db_engine(settings.database_url)
    try:
        require_migrated(engine, settings.database_url)
        with unit_of_work(make_session_factory(engine)) as session:
            yield session
    finally:
        engine.dispose()
