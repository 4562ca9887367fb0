"""Quality CLI: `prefloop ai-annotate` (rank tasks as an AI annotator) and `prefloop quality` (report)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from app.console import JsonFlag, cli_session, emit, fail
from app.db import create_db_engine, make_session_factory
from app.projects import service as projects
from app.settings import get_settings


def register(cli: typer.Typer) -> None:
    """Add the quality commands to the CLI."""

    @cli.command("ai-annotate")
    def ai_annotate(
        project: Annotated[str, typer.Argument(help="project id or name")],
        max_tasks: Annotated[int, typer.Option("--max-tasks", min=1, help="rank at most this many tasks")] = 10,
        endpoint: Annotated[str | None, typer.Option(help="OpenAI-compatible base URL, e.g. http://host/v1")] = None,
        model: Annotated[str | None, typer.Option(help="model name sent to the endpoint")] = None,
        reward_model: Annotated[bool, typer.Option("--reward-model", help="rank by the active RM's scores")] = False,
        api_key_env: Annotated[str, typer.Option(help="environment variable holding the endpoint's key")] = (
            "PREFLOOP_AI_API_KEY"
        ),
        name: Annotated[str | None, typer.Option(help="AI annotator name (default: the model, or reward-model)")] = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Rank up to --max-tasks tasks of PROJECT as an AI annotator (source 'ai', not in human agreement)."""
        from app.quality.ai_annotator import (  # lazy: labeling's web stack and httpx slow every CLI start
            ChatRanker,
            ai_user,
            annotate,
            rm_ranker,
        )
        from app.quality.picker import install  # lazy: scipy (the quality report) costs the CLI a second

        if reward_model == bool(endpoint):
            fail("choose exactly one ranker: --reward-model, or --endpoint URL --model NAME")
            return
        if endpoint and not model:
            fail("--endpoint needs --model NAME")
            return
        ranker = rm_ranker if reward_model else ChatRanker(str(endpoint), str(model), os.environ.get(api_key_env))
        install()
        try:
            with cli_session() as db:
                project_id = projects.get_by_ref(db, project).id
                user_id = ai_user(db, name or (model if endpoint else "reward-model") or "ai").id
        except (projects.ProjectNotFound, ValueError) as exc:
            fail(str(exc))
            return
        engine = create_db_engine(get_settings().database_url)
        try:
            result = annotate(make_session_factory(engine), project_id, user_id, ranker, max_tasks)
        finally:
            engine.dispose()
        emit(result.to_dict(), as_json, f"submitted {result.submitted}, skipped {result.skipped}")

    @cli.command("quality")
    def quality_report(
        project: Annotated[str, typer.Argument(help="project id or name")],
        recompute_weights: Annotated[bool, typer.Option("--recompute-weights", help="store trust weights")] = False,
        as_json: JsonFlag = False,
    ) -> None:
        """Print PROJECT's quality figures (the JSON API's shape); optionally store trust weights."""
        from app.quality import service, weights  # lazy: scipy (the quality report) costs the CLI a second

        try:
            with cli_session() as db:
                p = projects.get_by_ref(db, project)
                stored = weights.recompute_trust_weights(db, p).to_dict() if recompute_weights else None
                data = service.get_quality(db, p, fresh=True).to_dict()
        except projects.ProjectNotFound as exc:
            fail(str(exc))
            return
        if stored is not None:
            data["weights_stored"] = stored
        a = data["agreement"]
        emit(data, as_json, f"pairwise agreement {a['pairwise_agreement']}, tau-b {a['kendall_tau_b']}, "
                            f"alpha {a['krippendorff_alpha']} over {a['n_prompts_multi']} prompts; "
                            f"{len(data['annotators'])} annotators")
