"""`prefloop models …`: list a project's model versions (`list`), create local models (the tiny CPU models
used by CI, the demo and benchmarks), serve policy versions over the OpenAI completions protocol (`serve`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from app.console import JsonFlag, cli_session, emit, fail
from app.loop import service as loop
from app.models.enums import VersionKind
from app.projects import service as projects
from app.registry import service as registry
from worker.context import JobFailure
from worker.handlers.common import verified

cli = typer.Typer(help="Model versions of a project; local models (no downloads).", no_args_is_help=True)


@cli.callback()
def _group() -> None:
    """Model versions of a project; local models (no downloads)."""


@cli.command("list")
def list_command(
    project: Annotated[str, typer.Argument(help="Project id or name.")],
    kind: Annotated[str | None, typer.Option(help="policy or reward (default: both).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Every version, newest first: kind, status, parent, reference, lineage counts and promotion state with
    its reason, reward models' test-set version and accuracy on it (the fields of GET
    /api/projects/{id}/models but metrics and training_config)."""
    if kind is not None and kind not in registry.KINDS:
        fail("--kind must be policy or reward")
    try:
        with cli_session() as db:
            row = projects.get_by_ref(db, project)
            views = loop.version_views(db, registry.list_versions(db, row.id, kind))
            rows = [v.model_dump(mode="json", exclude={"metrics", "training_config"}) for v in views]
    except projects.ProjectNotFound as exc:
        fail(str(exc))
        return
    lines = [f"{r['name']}\t{r['kind']}\t{r['status']}\tparent={r['parent'] or '-'}\t"
             f"reference={r['reference_version'] or '-'}\tcomparisons={r['comparisons']}\t"
             f"rollout_prompts={r['rollout_prompts']}\tdemonstrations={r['demonstrations']}\t"
             f"promotion={r['promotion_state'] or '-'}"
             + (f" ({r['promotion_reason']})" if r["promotion_reason"] else "")
             + (f"\ttest_set=v{r['test_set_version']}\ttest_accuracy={r['test_accuracy']:.3f}"
                if r["test_set_version"] is not None and r["test_accuracy"] is not None else "")
             for r in rows]
    emit(rows, as_json, "\n".join(lines) or "no model versions")


def _texts_from_value(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):  # chat messages
        return [str(m.get("content", "")) for m in value if isinstance(m, dict)]
    return []


def read_texts(path: Path) -> list[str]:
    """Texts for tokenizer training: the prompts (and completions) of a JSONL file, else one text per line."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}") from exc
    lines = [ln for ln in raw.splitlines() if ln.strip()]
    if path.suffix.lower() == ".jsonl":
        texts: list[str] = []
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise typer.BadParameter(f"{path}:{number}: invalid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise typer.BadParameter(f"{path}:{number}: expected a JSON object")
            for key in ("prompt", "messages", "chosen", "rejected"):
                texts.extend(_texts_from_value(record.get(key)))
            for key in ("completions", "completion"):
                value = record.get(key)
                if isinstance(value, list):
                    texts.extend(v for v in value if isinstance(v, str))
        return [t for t in texts if t]
    return lines


@cli.command("init-tiny")
def init_tiny_command(
    directory: Annotated[Path, typer.Argument(help="Output directory; policy/ and reward/ are created inside.")],
    texts_file: Annotated[
        Path | None,
        typer.Option("--texts-file", help="Tokenizer training texts: one per line, or the prompts of a .jsonl."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed for the weights.")] = 0,
    vocab_size: Annotated[int, typer.Option(help="BPE vocabulary size.")] = 512,
) -> None:
    """Create a tiny random policy and reward model with a locally trained tokenizer; prints their paths."""
    from transformers.utils import logging as hf_logging  # lazy: optional [worker] extra

    from worker.training.tiny import default_texts, init_tiny  # lazy: imports torch

    hf_logging.disable_progress_bar()
    texts = read_texts(texts_file) if texts_file is not None else default_texts()
    if not texts:
        raise typer.BadParameter(f"{texts_file} contains no texts")
    paths = init_tiny(directory, texts, seed=seed, vocab_size=vocab_size)
    typer.echo(json.dumps({name: str(p) for name, p in paths.items()}))


def _resolve_versions(refs: list[str], project: str | None) -> list[tuple[str, str]]:
    """(name, checkpoint path) of each policy version named by id, or by name within --project."""
    found: list[tuple[str, str]] = []
    with cli_session() as db:
        named: dict[str, Any] = {}
        row = None
        if project is not None:
            try:
                row = projects.get_by_ref(db, project)
            except projects.ProjectNotFound as exc:
                fail(str(exc))
            named = {v.name: v for v in registry.list_versions(db, row.id, VersionKind.POLICY)}
        for ref in refs:
            version = named.get(ref)
            if version is None and ref.isdigit():
                try:
                    version = registry.get(db, int(ref), row.id if row is not None else None)
                except registry.VersionNotFound as exc:
                    fail(str(exc))
            if version is None:
                fail(f"no policy version {ref!r}" + (f" in project {project}" if project else
                                                      " (give a version id, or --project to name it)"))
            if version.kind != VersionKind.POLICY or not version.checkpoint_path:
                fail(f"version {ref!r} is not a policy with a checkpoint (kind {version.kind})")
            found.append((version.name, str(version.checkpoint_path)))
    return found


@cli.command("serve")
def serve_command(
    versions: Annotated[list[str], typer.Argument(help="Policy version ids, or names with --project.")],
    project: Annotated[str | None, typer.Option(help="Project id or name the version names belong to.")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Serve policy versions over the OpenAI completions protocol (POST /v1/completions, GET /v1/models),
    each under its version name, with the in-process sampler (docs/sampling.md)."""
    import uvicorn  # lazy: the ASGI server (~75 ms with asyncio) is needed by `serve` only
    from transformers.utils import logging as hf_logging  # lazy: optional [worker] extra

    from worker.serving import ServedModel, create_server  # lazy: pulls fastapi/starlette into CLI start-up
    from worker.training.sampling import load_policy  # lazy: imports torch

    hf_logging.disable_progress_bar()
    served = []
    for name, path in _resolve_versions(versions, project):
        try:
            model, tokenizer = load_policy(verified(path), device=device)
        except (JobFailure, OSError, ValueError) as exc:
            fail(f"cannot load {name} from {path}: {exc}")
        served.append(ServedModel(name, model, tokenizer, int(time.time())))
    typer.echo(f"serving {', '.join(m.name for m in served)} on http://{host}:{port}/v1", err=True)
    uvicorn.run(create_server(served), host=host, port=port, log_level="info")
