"""`prefloop export PROJECT --kind K --format F -o PATH [--bundle DIR]`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.orm import Session

from app.console import JsonFlag, emit, fail
from app.db import create_db_engine
from app.exports.schemas import ExportOptions
from app.projects import service as projects
from app.settings import get_settings


def register(cli: typer.Typer) -> None:
    """Add the `export` command to the CLI."""

    @cli.command("export")
    def export_command(
        project: Annotated[str, typer.Argument(help="project id or name")],
        kind: Annotated[str, typer.Option(help="pairs, rankings, rm, prompts, sft or consensus")] = "pairs",
        file_format: Annotated[
            str | None, typer.Option("--format", help="jsonl, csv or parquet (default jsonl; bundles parquet)")
        ] = None,
        output: Annotated[Path | None, typer.Option("-o", "--output", help="file to write ('-' for stdout)")] = None,
        bundle: Annotated[
            Path | None, typer.Option(help="write every kind with a train/test split to this new directory")
        ] = None,
        since: Annotated[str | None, typer.Option(help="only rows created at/after this ISO date")] = None,
        annotator: Annotated[str | None, typer.Option(help="only this annotator's rows (email or id)")] = None,
        model_version: Annotated[
            int | None, typer.Option(help="only comparisons of completions sampled by this model version")
        ] = None,
        trained_version: Annotated[str | None, typer.Option(
            "--trained-version", help="only the rows that trained this model version (id or name): pairs, rankings "
                                      "or rm of a reward model or DPO policy, sft of an SFT policy, prompts of "
                                      "a PPO/RLOO policy")] = None,
        margin_column: Annotated[bool, typer.Option("--margin-column", help="pairs: add margin (pairwise strength 1-3, else rank_gap)")] = False,
        flatten_chat: Annotated[bool, typer.Option(
            "--flatten-chat", help="CSV of conversations: write each as 'role: content' turns")] = False,
        humans_only: Annotated[bool, typer.Option(
            "--humans-only", help="leave out the AI annotator's labels (labeler reward-model or llm-judge:…)")] = False,
        test_fraction: Annotated[float, typer.Option(help="bundle: share of prompts in the test split")] = 0.1,
        as_json: JsonFlag = False,
    ) -> None:
        """Export a project's data (one consistent snapshot, streamed with constant memory)."""
        from app.exports import service  # lazy: imports pyarrow (parquet), kept out of CLI start-up

        if bundle is None and output is None:
            fail("give -o PATH (or '-' for stdout) or --bundle DIR")
        engine = create_db_engine(get_settings().database_url)
        try:
            with Session(engine) as db:
                project_id = projects.get_by_ref(db, project).id
                filters = service.resolve_filters(db, project_id, since, annotator, model_version,
                                                  humans_only=humans_only, trained_version=trained_version)
            options = ExportOptions(margin_column=margin_column, flatten_chat=flatten_chat)
            if bundle is not None:
                result = service.write_bundle(
                    engine, project_id, bundle, file_format or "parquet", test_fraction, filters, options
                )
                emit({"bundle": str(result.path), "format": result.fmt, "rows": result.rows}, as_json,
                     f"wrote {result.path} ({result.fmt}): "
                     + ", ".join(f"{k} {v['train']}+{v['test']}" for k, v in result.rows.items()))
                return
            assert output is not None
            fmt = file_format or "jsonl"
            if str(output) == "-":
                rows = service.export_to_sink(engine, project_id, kind, fmt, sys.stdout.buffer, filters, options)
                sys.stdout.buffer.flush()
                if as_json:
                    typer.echo(f'{{"rows": {rows}}}', err=True)
                return
            rows = service.export_to_file(engine, project_id, kind, fmt, output, filters, options)
            emit({"path": str(output), "kind": kind, "format": fmt, "rows": rows}, as_json,
                 f"wrote {rows} {kind} row(s) to {output}")
        except (projects.ProjectNotFound, service.ExportError) as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"cannot write the export: {exc}")
        finally:
            engine.dispose()
