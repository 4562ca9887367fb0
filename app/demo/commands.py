"""`prefloop demo`: seed the demo admin, annotator and project (idempotent)."""

from __future__ import annotations

import typer

from app.console import JsonFlag, cli_session, emit, fail
from app.demo.seed import seed_demo
from app.demo.tiny_models import ensure_demo_models
from app.imports.service import ImportFailed


def register(cli: typer.Typer) -> None:
    """Add the `demo` command to the CLI."""

    @cli.command("demo")
    def demo_command(as_json: JsonFlag = False) -> None:
        """Create the demo project, an admin (if none exists) and an annotator; print one-time passwords once."""
        try:
            with cli_session() as db:
                result = seed_demo(db)
        except ImportFailed as exc:
            fail(f"demo prompts did not import: {exc.outcome.as_dict()['errors'][:3]}")
            return
        if result.project_id is not None:
            # With the worker extra installed, the demo gets tiny CPU models so the loop runs (docs/worker.md).
            action = ensure_demo_models(result.project_id)
            if action:
                result.actions.append(action)
        data = {
            "actions": result.actions,
            "project_id": result.project_id,
            "admin": result.admin,
            "annotator": result.annotator,
            "import": result.import_counts,
        }
        lines = list(result.actions)
        for user in (result.admin, result.annotator):
            if user and user.get("password"):
                lines.append(f"one-time password for {user['email']} (shown once): {user['password']}")
        emit(data, as_json, "\n".join(lines))
