"""Ranking pages: the annotator's task page (full page or htmx swap), submit, skip, heartbeat; admin progress."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from app.auth.deps import CurrentAdmin, CurrentUser, DbSession
from app.labeling import assignment as tasks
from app.labeling import progress, service
from app.labeling.errors import Conflict, Invalid, LabelingError, NotFound
from app.labeling.forms import ranking_from_form
from app.models import Assignment, Project, User
from app.projects.service import settings_of
from app.web.csrf import FORM_MAX_FIELDS, FORM_MAX_FILES, FORM_MAX_PART_SIZE
from app.web.paths import Id
from app.web.templating import is_htmx_fragment_request, render

router = APIRouter(tags=["labeling"])
TEMPLATE = "labeling/label.html"
ERRORS_TEMPLATE = "labeling/_errors.html"
FIELD_NAMES = {
    "ranks": "Rank", "flags": "Flags", "likert": "Quality", "rationale": "Rationale", "preference": "Preference",
}


def _problems(exc: LabelingError, shown: list[int]) -> list[dict[str, Any]]:
    """The errors as the page shows them: every problem at once, naming answers by letter, never by id."""
    letters = dict(zip(shown, tasks.LETTERS, strict=False))
    if not isinstance(exc, Invalid) or not exc.problems:
        return [{"field": "", "text": str(exc), "letters": []}]
    out = []
    for problem in exc.problems:
        named = sorted(letters.get(cid, "?") for cid in problem.completion_ids)
        label = FIELD_NAMES.get(problem.field, problem.field)
        where = f" — answer{'s' if len(named) > 1 else ''} {', '.join(named)}" if named else ""
        out.append({"field": problem.field, "text": f"{label}: {problem.text}{where}.", "letters": named})
    return out


async def form_body(request: Request) -> FormData:
    """The posted form (already parsed and cached if the CSRF check read it)."""
    return await request.form(
        max_fields=FORM_MAX_FIELDS, max_files=FORM_MAX_FILES, max_part_size=FORM_MAX_PART_SIZE
    )


FormBody = Annotated[FormData, Depends(form_body)]


def open_project(project_id: Id, db: DbSession) -> Project:
    """The path's project, open for labeling (an archived one is not found); declared after the user guard."""
    return service.labeling_project(db, project_id)


OpenProject = Annotated[Project, Depends(open_project)]


def path_assignment(assignment_id: Id, db: DbSession, user: CurrentUser, project: OpenProject) -> Assignment:
    """The signed-in annotator's own assignment of the path, in the path's project (404 otherwise)."""
    row = tasks.own_assignment(db, assignment_id, user)
    if row.project_id != project.id:
        raise NotFound(f"assignment {assignment_id} not found")
    return row


OwnAssignment = Annotated[Assignment, Depends(path_assignment)]


def _url(project: Project, task: tasks.Task | None) -> str:
    return f"/projects/{project.id}/label" + (f"/{task.assignment.id}" if task else "")


def _page(
    request: Request,
    db: DbSession,
    project: Project,
    user: User,
    task: tasks.Task | None,
    *,
    block: str | None = "task",
    status_code: int = 200,
    push: bool = False,
    **extra: Any,
) -> Response:
    cfg = settings_of(project).labeling
    items = list(zip(task.completions, task.letters, strict=True)) if task else []
    context: dict[str, Any] = {
        "project": project,
        "cfg": cfg,
        "task": task,
        "items": items,
        "pairwise": cfg.mode == "pairwise" and len(items) == 2,
        "said": None,  # on the edit page: what the stored ranking says (cards in its order, fields filled)
        "edit_last": service.editable_last(db, project, user),
        "progress": progress.annotator_progress(db, project, user.id),
        "heartbeat_seconds": max(15, min(120, project.lease_minutes * 60 // 4)),
        "notice": None,
        "error": None,
        "conflict": None,
        "problems": [],
        "saved": None,
    }
    context.update(extra)
    said = context["said"]
    if said is not None:  # best first, as stored; ties stay next to each other (stable by shown order)
        context["items"] = sorted(items, key=lambda item: said["ranks"].get(item[0].id, len(items)))
    headers = {"HX-Push-Url": _url(project, task)} if push else None
    return render(request, TEMPLATE, context, block=block, status_code=status_code, headers=headers)


@router.get("/projects/{project_id}/label", response_class=HTMLResponse)
def label_page(request: Request, project_id: Id, db: DbSession, user: CurrentUser) -> Response:
    project, task = service.claim_next(db, project_id, user)
    if task is not None and not is_htmx_fragment_request(request):
        return RedirectResponse(_url(project, task), status_code=303)
    return _page(request, db, project, user, task, push=task is not None)


@router.get("/projects/{project_id}/label/{assignment_id}", response_class=HTMLResponse)
def task_page(
    request: Request, db: DbSession, user: CurrentUser, project: OpenProject, row: OwnAssignment
) -> Response:
    if tasks.is_live(row):
        return _page(request, db, project, user, tasks.load_task(db, row))
    # Back button or an old tab: say what happened to that task and show the current one instead.
    notice = (
        f"Task #{row.id} is {row.status if row.status != 'active' else 'expired'}; here is your current task."
    )
    return _page(request, db, project, user, service.next_task(db, project, user), notice=notice)


@router.post("/projects/{project_id}/label/{assignment_id}", response_class=HTMLResponse)
def submit_page(
    request: Request, assignment_id: Id, db: DbSession, user: CurrentUser, project: OpenProject, form: FormBody
) -> Response:
    try:
        row = tasks.own_assignment(db, assignment_id, user)
        data = ranking_from_form(form, row.shown_completion_ids)
        client = {"user_agent": request.headers.get("user-agent", "")[:300], "via": "page"}
        service.submit(db, user, assignment_id, data, client)
    except NotFound:
        raise  # the error page, not the form
    except Conflict as exc:
        return _conflict_page(request, db, project, user, row.shown_completion_ids, exc)
    except LabelingError as exc:
        problems = _problems(exc, list(row.shown_completion_ids))
        if is_htmx_fragment_request(request):
            return render(request, ERRORS_TEMPLATE, {"problems": problems}, status_code=exc.status)
        task = tasks.load_task(db, row)
        message = " ".join(p["text"] for p in problems)
        return _page(
            request, db, project, user, task, status_code=exc.status, error=message, problems=problems
        )
    if not is_htmx_fragment_request(request):
        return RedirectResponse(f"/projects/{project.id}/label", status_code=303)
    today = progress.annotator_progress(db, project, user.id)["today"]
    saved = f"Saved — ranking {today} today"
    return _page(request, db, project, user, service.next_task(db, project, user), push=True, saved=saved)


def _conflict_page(
    request: Request, db: DbSession, project: Project, user: User, shown: list[int], exc: Conflict
) -> Response:
    """A refused ranking: say why and show back what was submitted (best first), so nothing typed is lost."""
    letters = dict(zip(shown, tasks.LETTERS, strict=False))
    echo = exc.echo or {}
    ranked = sorted(((r, letters.get(int(c), "?")) for c, r in (echo.get("ranks") or {}).items()))
    conflict = {"message": str(exc), "ranked": ranked, "rationale": echo.get("rationale", "")}
    return _page(request, db, project, user, None, status_code=409, conflict=conflict)


@router.get("/projects/{project_id}/label/{assignment_id}/edit", response_class=HTMLResponse)
def edit_page(
    request: Request, assignment_id: Id, db: DbSession, user: CurrentUser, project: OpenProject
) -> Response:
    """The annotator's last submitted ranking, reopened as it was stored, while its edit window lasts."""
    try:
        task, said = service.open_for_edit(db, project, user, assignment_id)
    except Conflict as exc:
        current = service.next_task(db, project, user)
        return _page(request, db, project, user, current, notice=str(exc), push=True)
    return _page(request, db, project, user, task, said=said)


@router.post("/projects/{project_id}/label/{assignment_id}/edit", response_class=HTMLResponse)
def revise_page(
    request: Request, assignment_id: Id, db: DbSession, user: CurrentUser, project: OpenProject,
    row: OwnAssignment, form: FormBody,
) -> Response:
    """Store the changed ranking as its next version; refused (409, input shown back) once the window closed
    or the ranking has trained a model."""
    try:
        data = ranking_from_form(form, row.shown_completion_ids)
        result = service.revise(db, user, assignment_id, data)
    except Conflict as exc:
        return _conflict_page(request, db, project, user, row.shown_completion_ids, exc)
    except LabelingError as exc:
        problems = _problems(exc, list(row.shown_completion_ids))
        if is_htmx_fragment_request(request):
            return render(request, ERRORS_TEMPLATE, {"problems": problems}, status_code=exc.status)
        task, said = service.open_for_edit(db, project, user, assignment_id)
        message = " ".join(p["text"] for p in problems)
        return _page(request, db, project, user, task, status_code=exc.status, error=message, problems=problems,
                     said=said)
    if not is_htmx_fragment_request(request):
        return RedirectResponse(f"/projects/{project.id}/label", status_code=303)
    saved = f"Changed — your ranking is now version {result['version']}"
    return _page(request, db, project, user, service.next_task(db, project, user), push=True, saved=saved)


@router.post("/projects/{project_id}/label/{assignment_id}/skip", response_class=HTMLResponse)
def skip_page(
    request: Request, assignment_id: Id, db: DbSession, user: CurrentUser, project: OpenProject, form: FormBody
) -> Response:
    reason = form.get("reason")
    try:
        service.skip(db, user, assignment_id, reason if isinstance(reason, str) else "")
    except NotFound:
        raise  # the error page, not the form
    except LabelingError as exc:
        return _page(request, db, project, user, None, status_code=exc.status, error=str(exc))
    if not is_htmx_fragment_request(request):
        return RedirectResponse(f"/projects/{project.id}/label", status_code=303)
    return _page(request, db, project, user, service.next_task(db, project, user), push=True)


@router.post("/projects/{project_id}/label/{assignment_id}/heartbeat")
def heartbeat_page(project_id: Id, assignment_id: Id, db: DbSession, user: CurrentUser) -> Response:
    try:
        expires = service.heartbeat(db, user, assignment_id)
    except LabelingError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)
    return JSONResponse({"assignment_id": assignment_id, "lease_expires_at": expires.isoformat()})


@router.get("/projects/{project_id}/progress", response_class=HTMLResponse)
def progress_page(request: Request, db: DbSession, _admin: CurrentAdmin, project: OpenProject) -> Response:
    stats = progress.project_progress(db, project)
    return render(
        request,
        "labeling/progress.html",
        {"project": project, "stats": stats, "chart": progress.bar_chart(stats.per_day)},
    )
