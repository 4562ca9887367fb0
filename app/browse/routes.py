"""Data browser HTTP (admins only): prompt and ranking lists with search, filters and paging; a prompt with
its completions and rankings; a ranking as the annotator saw it; skipped tasks (page and CSV); archive,
restore or delete a prompt after a confirmation; mark gold from a ranking. Parsing and rendering only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth.deps import CurrentAdmin, DbSession
from app.browse import service
from app.browse.schemas import MAX_PAGE, PROMPT_STATUSES, DataFilter
from app.projects import service as projects
from app.web.paths import Id
from app.web.templating import render

router = APIRouter(tags=["data browser"])

NOTICES = {
    "archived": "Prompt archived: nobody will be handed it again; its rankings and lineage are kept.",
    "restored": "Prompt restored: it is back in the labeling queue.",
    "deleted": "Prompt deleted with its completions and tasks.",
    "gold": "Gold item saved from this ranking's order. The prompt is now handed out as a gold check.",
}
Notice = Annotated[str, Query(max_length=20)]


def _base(project_id: int) -> str:
    return f"/projects/{project_id}/data"


@router.get("/projects/{project_id}/data", response_class=HTMLResponse)
def data_home(project_id: Id, _admin: CurrentAdmin) -> Response:
    return RedirectResponse(f"{_base(project_id)}/prompts", status_code=303)


@router.get("/projects/{project_id}/data/prompts", response_class=HTMLResponse)
def prompts_page(request: Request, project_id: Id, db: DbSession, _admin: CurrentAdmin,
                 f: Annotated[DataFilter, Query()], notice: Notice = "") -> Response:
    project = projects.get(db, project_id)
    return render(request, "browse/prompts.html", {
        "project": project, "f": f, "result": service.list_prompts(db, project, f), "statuses": PROMPT_STATUSES,
        "choices": service.filter_choices(db, project), "notice": NOTICES.get(notice), "max_page": MAX_PAGE,
        "prompt_text": service.prompt_text,
    }, block="results")


@router.get("/projects/{project_id}/data/prompts/{prompt_id}", response_class=HTMLResponse)
def prompt_page(request: Request, project_id: Id, prompt_id: Id, db: DbSession, _admin: CurrentAdmin,
                notice: Notice = "") -> Response:
    project = projects.get(db, project_id)
    prompt = service.get_prompt(db, project, prompt_id)
    return render(request, "browse/prompt.html", {
        "project": project, "prompt": prompt, "text": service.prompt_text(prompt.text, prompt.messages),
        "archived": service.is_archived(prompt), "completions": service.prompt_completions(db, prompt),
        "rankings": service.prompt_rankings(db, prompt), "notice": NOTICES.get(notice),
        "rankings_max": service.PROMPT_RANKINGS_MAX,
    })


@router.get("/projects/{project_id}/data/prompts/{prompt_id}/remove", response_class=HTMLResponse)
def remove_page(request: Request, project_id: Id, prompt_id: Id, db: DbSession, _admin: CurrentAdmin) -> Response:
    project = projects.get(db, project_id)
    prompt = service.get_prompt(db, project, prompt_id)
    return render(request, "browse/remove.html", {
        "project": project, "prompt": prompt, "text": service.prompt_text(prompt.text, prompt.messages),
        "archived": service.is_archived(prompt), "counts": service.dependents(db, prompt),
    })


@router.post("/projects/{project_id}/data/prompts/{prompt_id}/archive")
def archive_action(project_id: Id, prompt_id: Id, db: DbSession, _admin: CurrentAdmin) -> Response:
    project = projects.get(db, project_id)
    service.archive_prompt(db, project, service.get_prompt(db, project, prompt_id))
    return RedirectResponse(f"{_base(project_id)}/prompts/{prompt_id}?notice=archived", status_code=303)


@router.post("/projects/{project_id}/data/prompts/{prompt_id}/restore")
def restore_action(project_id: Id, prompt_id: Id, db: DbSession, _admin: CurrentAdmin) -> Response:
    project = projects.get(db, project_id)
    service.restore_prompt(db, project, service.get_prompt(db, project, prompt_id))
    return RedirectResponse(f"{_base(project_id)}/prompts/{prompt_id}?notice=restored", status_code=303)


@router.post("/projects/{project_id}/data/prompts/{prompt_id}/delete")
def delete_action(project_id: Id, prompt_id: Id, db: DbSession, _admin: CurrentAdmin) -> Response:
    project = projects.get(db, project_id)
    service.delete_prompt(db, project, service.get_prompt(db, project, prompt_id))
    return RedirectResponse(f"{_base(project_id)}/prompts?notice=deleted", status_code=303)


@router.get("/projects/{project_id}/data/rankings", response_class=HTMLResponse)
def rankings_page(request: Request, project_id: Id, db: DbSession, _admin: CurrentAdmin,
                  f: Annotated[DataFilter, Query()]) -> Response:
    project = projects.get(db, project_id)
    return render(request, "browse/rankings.html", {
        "project": project, "f": f, "result": service.list_rankings(db, project, f),
        "choices": service.filter_choices(db, project), "max_page": MAX_PAGE,
    }, block="results")


@router.get("/projects/{project_id}/data/rankings/{ranking_id}", response_class=HTMLResponse)
def ranking_page(request: Request, project_id: Id, ranking_id: Id, db: DbSession, _admin: CurrentAdmin,
                 notice: Notice = "") -> Response:
    project = projects.get(db, project_id)
    view = service.ranking_view(db, project, ranking_id)
    return render(request, "browse/ranking.html", {
        "project": project, "view": view, "text": service.prompt_text(view.prompt.text, view.prompt.messages),
        "notice": NOTICES.get(notice), "archived": service.is_archived(view.prompt),
    })


@router.post("/projects/{project_id}/data/rankings/{ranking_id}/gold")
def gold_action(project_id: Id, ranking_id: Id, db: DbSession, _admin: CurrentAdmin) -> Response:
    service.mark_gold_from_ranking(db, projects.get(db, project_id), ranking_id)
    return RedirectResponse(f"{_base(project_id)}/rankings/{ranking_id}?notice=gold", status_code=303)


@router.get("/projects/{project_id}/data/skipped", response_class=HTMLResponse)
def skipped_page(request: Request, project_id: Id, db: DbSession, _admin: CurrentAdmin,
                 page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1) -> Response:
    project = projects.get(db, project_id)
    return render(request, "browse/skipped.html", {"project": project, "result": service.skipped(db, project, page)},
                  block="results")


@router.get("/projects/{project_id}/data/skipped.csv")
def skipped_csv(project_id: Id, db: DbSession, _admin: CurrentAdmin) -> Response:
    project = projects.get(db, project_id)
    return Response(service.skipped_csv(db, project), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="project-{project.id}-skipped.csv"',
        "X-Content-Type-Options": "nosniff",
    })
