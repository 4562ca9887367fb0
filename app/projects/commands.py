"""`prefloop projects create|list|configure` (models, algorithm, schedule) and
`prefloop loop run|sft|status|tiny-models`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from app.console import JsonFlag, cli_session, emit, fail
from app.demo import tiny_models
from app.projects import service
from app.projects.schemas import AI_RANKINGS_POLICY, ProjectCreate, ProjectUpdate
from app.registry import service as registry
from app.settings import get_settings

projects_cli = typer.Typer(help="Projects.", no_args_is_help=True)
loop_cli = typer.Typer(help="The training loop: run it now, see where it stands.", no_args_is_help=True)


def register(cli: typer.Typer) -> None:
    """Attach the `projects` and `loop` groups."""
    cli.add_typer(projects_cli, name="projects")
    cli.add_typer(loop_cli, name="loop")


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
    with cli_session() as db:
        rows = [
            {"id": p.id, "name": p.name, "k_min": p.k_min, "k_max": p.k_max,
             "annotations_per_prompt": p.annotations_per_prompt, "archived": p.archived_at is not None}
            for p in service.list_projects(db, include_archived=archived)
        ]
    emit(rows, as_json, "\n".join(f"{r['id']}\t{r['name']}" for r in rows) or "no projects")


@projects_cli.command("configure")
def configure(
    project: Annotated[str, typer.Argument(help="Project id or name.")],
    policy_model: Annotated[str | None, typer.Option(help="Base policy: a hub id or a local model directory.")] = None,
    reward_model: Annotated[str | None, typer.Option(help="Base reward model: a hub id or a local directory.")] = None,
    algorithm: Annotated[str | None, typer.Option(help="ppo, rloo or dpo.")] = None,
    retrain_every: Annotated[int | None, typer.Option(help="New comparisons that trigger retraining.")] = None,
    prompts_per_round: Annotated[int | None, typer.Option(help="Prompts sampled for each new round.")] = None,
    schedule: Annotated[bool | None, typer.Option("--schedule/--no-schedule", help="Retrain automatically.")] = None,
    k: Annotated[int | None, typer.Option(help="Completions sampled per prompt (default k_max).")] = None,
    temperature: Annotated[float | None, typer.Option()] = None,
    top_p: Annotated[float | None, typer.Option()] = None,
    max_new_tokens: Annotated[int | None, typer.Option()] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    policy_steps: Annotated[int | None, typer.Option()] = None,
    kl_budget: Annotated[float | None, typer.Option()] = None,
    rm_accuracy_tolerance: Annotated[float | None, typer.Option()] = None,
    rm_epochs: Annotated[int | None, typer.Option()] = None,
    rm_lr: Annotated[float | None, typer.Option()] = None,
    rm_share_prefix: Annotated[bool | None, typer.Option(
        help="Forward each prompt once per ranking group when training the reward model.")] = None,
    ai_rankings: Annotated[str | None, typer.Option(help=AI_RANKINGS_POLICY)] = None,
    policy_lr: Annotated[float | None, typer.Option()] = None,
    policy_batch_prompts: Annotated[int | None, typer.Option(help="Prompts per PPO/RLOO step.")] = None,
    rloo_k: Annotated[int | None, typer.Option(help="Samples per prompt for RLOO.")] = None,
    kl_beta: Annotated[float | None, typer.Option(help="KL penalty coefficient.")] = None,
    confirm_rankings: Annotated[int | None, typer.Option(
        help="Human rankings showing a provisional policy beside the incumbent before people decide (0: off).")] = None,
    interval_minutes: Annotated[int | None, typer.Option(
        help="Also start a round when none started for this many minutes (0: off).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Set a project's models, algorithm, sampling and schedule (same rules as PATCH /api/projects/{id})."""
    sections: dict[str, dict[str, Any]] = {
        "training": {"policy_model": policy_model, "reward_model": reward_model, "algorithm": algorithm,
                     "policy_steps": policy_steps, "kl_budget": kl_budget,
                     "rm_accuracy_tolerance": rm_accuracy_tolerance, "rm_epochs": rm_epochs, "rm_lr": rm_lr,
                     "rm_share_prefix": rm_share_prefix, "ai_rankings": ai_rankings,
                     "policy_lr": policy_lr, "policy_batch_prompts": policy_batch_prompts, "rloo_k": rloo_k,
                     "kl_beta": kl_beta, "confirm_rankings": confirm_rankings},
        "schedule": {"enabled": schedule, "retrain_every": retrain_every, "prompts_per_round": prompts_per_round,
                     "interval_minutes": interval_minutes},
        "sampling": {"k": k, "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens,
                     "seed": seed},
    }
    patch = {name: {k: v for k, v in values.items() if v is not None} for name, values in sections.items()}
    patch = {name: values for name, values in patch.items() if values}
    for key in ("policy_model", "reward_model"):
        ref = patch.get("training", {}).get(key)
        # "org/name" is a hub id, loaded by the worker; something written as a path must exist here.
        if ref and ref.startswith(("/", "./", "../", "~")) and not Path(ref).expanduser().is_dir():
            fail(f"--{key.replace('_', '-')} {ref}: no such model directory")
    if not patch:
        fail("nothing to change: pass at least one option (see --help)")
    try:
        with cli_session() as db:
            row = service.get_by_ref(db, project)
            service.update(db, row, ProjectUpdate(settings=patch))
            out = {"id": row.id, "settings": service.settings_of(row).model_dump(mode="json")}
    except (service.ProjectNotFound, service.ProjectError) as exc:
        fail(str(exc))
        return
    emit(out, as_json, f"project {out['id']} updated: " + ", ".join(f"{s}.{k}" for s, v in patch.items() for k in v))


@loop_cli.command("run")
def loop_run(project: Annotated[str, typer.Argument(help="Project id or name.")], as_json: JsonFlag = False) -> None:
    """Run the loop now: retrain on new comparisons (then policy, then sampling), or sample the first round."""
    from app.scheduler import service as scheduler  # lazy: pulls app.logs -> starlette, kept out of --help

    try:
        with cli_session() as db:
            job = scheduler.run_loop_now(db, service.get_by_ref(db, project), requested_by="cli")
            out = {"job_id": job.id, "kind": job.kind, "status": job.status}
    except (service.ProjectNotFound, scheduler.SchedulerError) as exc:
        fail(str(exc))
        return
    emit(out, as_json, f"job {out['job_id']} ({out['kind']}) {out['status']}; a worker runs it (prefloop worker)")


@loop_cli.command("sft")
def loop_sft(project: Annotated[str, typer.Argument(help="Project id or name.")], as_json: JsonFlag = False) -> None:
    """Train the SFT version on the project's demonstrations now (stage one of the loop; with none, the base
    model stays the SFT version)."""
    from app.scheduler import service as scheduler  # lazy: pulls app.logs -> starlette, kept out of --help

    try:
        with cli_session() as db:
            job = scheduler.run_sft_now(db, service.get_by_ref(db, project), requested_by="cli")
            out = {"job_id": job.id, "kind": job.kind, "status": job.status}
    except (service.ProjectNotFound, scheduler.SchedulerError) as exc:
        fail(str(exc))
        return
    emit(out, as_json, f"job {out['job_id']} ({out['kind']}) {out['status']}; a worker runs it (prefloop worker)")


@loop_cli.command("status")
def loop_status(project: Annotated[str, typer.Argument(help="Project id or name.")], as_json: JsonFlag = False) -> None:
    """Where the loop stands: new comparisons, prompts waiting for candidates, active versions and jobs."""
    from app.scheduler import service as scheduler  # lazy: pulls app.logs -> starlette, kept out of --help

    try:
        with cli_session() as db:
            row = service.get_by_ref(db, project)
            status = scheduler.status(db, row)
            active = {kind: getattr(registry.active_version(db, row.id, kind), "name", None) for kind in registry.KINDS}
            out = {"project_id": row.id, "schedule_enabled": status.enabled, "retrain_every": status.retrain_every,
                   "new_comparisons": status.new_comparisons,
                   "prompts_without_completions": status.prompts_without_completions,
                   "eligible_prompts": status.eligible_prompts, "interval_minutes": status.interval_minutes,
                   "demonstrations": status.demonstrations, "sft_due": status.sft_due,
                   "awaiting": status.awaiting.message() if status.awaiting is not None else None,
                   "waiting_for": status.waiting_for,
                   "active": active, "active_jobs": [{"id": j.id, "kind": j.kind, "status": j.status}
                                                     for j in status.active_jobs]}
    except service.ProjectNotFound as exc:
        fail(str(exc))
        return
    emit(out, as_json, None)


@loop_cli.command("tiny-models")
def loop_tiny_models(
    project: Annotated[str, typer.Argument(help="Project id or name.")],
    directory: Annotated[Path | None, typer.Option(help="Where to write them (default <data_dir>/models/<id>).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create tiny CPU models for a project (needs the worker extra) and turn its schedule on."""
    if not tiny_models.torch_available():
        fail("torch is not installed: `make install-worker` (or pip install '.[worker]') first")
    try:
        with cli_session() as db:
            row = service.get_by_ref(db, project)
            target = directory or get_settings().data_dir / "models" / str(row.id)
            paths = tiny_models.attach_tiny_models(db, row, target)
    except (service.ProjectNotFound, tiny_models.TinyModelsError) as exc:
        fail(str(exc))
        return
    emit({"project_id": row.id, **paths}, as_json, f"tiny models for project {row.id}: {paths}")
