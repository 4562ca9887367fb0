"""`prefloop import PROJECT FILE`: import prompts, completions and preference pairs from a file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from app.console import JsonFlag, cli_session, emit, fail
from app.imports.schemas import ImportOptions
from app.imports.service import run_import
from app.projects import service as projects


def register(cli: typer.Typer) -> None:
    """Add the `import` command to the CLI."""

    @cli.command("import")
    def import_command(
        project: Annotated[str, typer.Argument(help="project id or name")],
        file: Annotated[Path, typer.Argument(help="JSONL, JSON array or CSV file", exists=True, dir_okay=False)],
        file_format: Annotated[
            str | None, typer.Option("--format", help="jsonl, json or csv (default: detected)")
        ] = None,
        prompt_column: Annotated[str | None, typer.Option(help="column holding the prompt text")] = None,
        completion_column: Annotated[
            str | None, typer.Option(help="long format: the column holding one completion per row")
        ] = None,
        model_column: Annotated[str | None, typer.Option(help="long format: the column naming the model")] = None,
        id_column: Annotated[str | None, typer.Option(help="column holding the prompt's external id")] = None,
        key_columns: Annotated[
            str | None, typer.Option(help="long format: comma-separated columns identifying a prompt")
        ] = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Import FILE into PROJECT: all records or none; every bad line is listed."""
        try:
            options = ImportOptions(
                format=file_format,
                prompt_column=prompt_column,
                completion_column=completion_column,
                model_column=model_column,
                id_column=id_column,
                key_columns=key_columns or [],
            )
        except ValidationError as exc:
            fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
            return
        try:
            with cli_session() as db, file.open("rb") as source:
                outcome = run_import(db, projects.get_by_ref(db, project), source, file.name, options)
        except projects.ProjectNotFound as exc:
            fail(str(exc))
            return
        data = outcome.as_dict()
        if outcome.ok:
            c = outcome.counts
            emit(data, as_json, (
                f"imported {file.name} ({outcome.file_format}): {c['prompts_added']} prompt(s) added, "
                f"{c['prompts_skipped']} already present, {c['completions_added']} completion(s), "
                f"{c['rankings_added']} ranking(s), {c['comparisons_added']} comparison(s), "
                f"{c.get('demonstrations_added', 0)} demonstration(s)"
            ) + "".join(f"\nnote: {note}" for note in outcome.notes))
            return
        lines = [f"line {i.line}, {i.field}: {i.reason}" for i in outcome.issues]
        if outcome.issue_count > len(outcome.issues):
            lines.append(f"… and {outcome.issue_count - len(outcome.issues)} more")
        lines += [f"note: {note}" for note in outcome.notes]
        emit(data, as_json, f"nothing imported: {outcome.issue_count} problem(s) in {file.name}\n" + "\n".join(lines))
        raise typer.Exit(1)
