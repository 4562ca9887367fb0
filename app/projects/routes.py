"""Project pages: the list, create and edit (every setting as a typed field, see settings_form), archive."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from app.auth.deps import CurrentAdmin, CurrentUser, DbSession
from app.members import service as members
from app.models import Project
from app.projects import service, settings_form
from app.projects.kinds import DEFAULT_KIND, KINDS, KindName, defaults_for
from app.projects.schemas import ProjectCreate, ProjectUpdate
from app.projects.settings_form import FormState
from app.web.csrf import FORM_MAX_FIELDS, FORM_MAX_FILES, FORM_MAX_PART_SIZE
from app.web.paths import Id
from app.web.templating import render

router = APIRouter(tags=["projects"])


async def _submitted(request: Request) -> dict[str, list[str]]:
    """Every submitted text field with all its values (a list setting sends one value per item)."""
    form = await request.form(max_fields=FORM_MAX_FIELDS, max_files=FORM_MAX_FILES, max_part_size=FORM_MAX_PART_SIZE)
    return {key: [v for v in form.getlist(key) if isinstance(v, str)] for key in form}


Submitted = Annotated[dict[str, list[str]], Depends(_submitted)]


def _checked(form: Mapping[str, list[str]], name: str) -> bool:
    return form.get(name, [""])[-1] in ("true", "on", "1")


def _kind(form: Mapping[str, list[str]]) -> str:
    kind = form.get("kind", [""])[-1]
    return kind if kind in KINDS else DEFAULT_KIND


def _service_error(state: FormState, message: str) -> None:
    """A service's refusal, shown at the field it names (or above the form)."""
    state.errors[settings_form.error_key_for(message)] = message[:1].upper() + message[1:]


def _as_form_data(project: Project) -> ProjectCreate:
    """A stored project as the form's model (not validated again: it was on the way in)."""
    return ProjectCreate.model_construct(
        name=project.name, guidelines=project.guidelines, k_min=project.k_min, k_max=project.k_max,
        annotations_per_prompt=project.annotations_per_prompt, lease_minutes=project.lease_minutes,
        allow_fewer_than_k_min=project.allow_fewer_than_k_min, settings=service.settings_of(project),
    )


def _form_page(
    request: Request,
    project: Project | None,
    state: FormState,
    *,
    shown_settings: ProjectCreate,
    kind: str = DEFAULT_KIND,
    archived: bool = False,
    status_code: int = 200,
) -> Response:
    context = {
        "project": project,
        "groups": settings_form.groups(),
        "values": state.values,
        "errors": state.errors,
        "kinds": list(KINDS.values()),
        "kind": kind,
        "archived": archived,
        "settings_json": settings_form.settings_json(shown_settings),
    }
    return render(request, "projects/form.html", context, status_code=status_code)


@router.get("/", response_class=HTMLResponse)
def home(request: Request, db: DbSession, user: CurrentUser) -> Response:
    projects = members.visible(db, user, service.list_projects(db, include_archived=user.is_admin))
    return render(request, "projects/list.html", {"projects": projects})


@router.get("/projects")
def projects_alias(_user: CurrentUser) -> RedirectResponse:
    """The project list lives at `/`; `/projects` (where people look for it) leads there."""
    return RedirectResponse("/", status_code=307)


@router.get("/projects/new", response_class=HTMLResponse)
def new_project_page(request: Request, _admin: CurrentAdmin, kind: KindName = DEFAULT_KIND) -> Response:
    """The new-project form, starting from the defaults of `kind` (?kind=summarisation)."""
    data = defaults_for(kind)
    return _form_page(request, None, FormState(settings_form.values_of(data), {}), kind=kind,
                      shown_settings=data)


@router.post("/projects", response_class=HTMLResponse)
def create_project(request: Request, db: DbSession, admin: CurrentAdmin, form: Submitted) -> Response:
    kind = _kind(form)
    state = settings_form.read_form(form, base=defaults_for(kind))
    if state.data is not None:
        try:
            project = service.create(db, state.data, admin)
        except service.ProjectError as exc:
            _service_error(state, str(exc))
        else:
            return RedirectResponse(f"/projects/{project.id}", status_code=303)
    return _form_page(request, None, state, kind=kind, shown_settings=defaults_for(kind), status_code=422)


@router.get("/projects/{project_id}", response_class=HTMLResponse)
def project_page(request: Request, project_id: Id, db: DbSession, user: CurrentUser) -> Response:
    project = service.get(db, project_id, include_archived=user.is_admin)
    if not user.is_admin:
        return RedirectResponse(f"/projects/{project.id}/label", status_code=303)
    return render(request, "projects/detail.html", {"project": project, "settings": service.settings_of(project)})


@router.get("/projects/{project_id}/edit", response_class=HTMLResponse)
def edit_project_page(request: Request, project_id: Id, db: DbSession, _admin: CurrentAdmin) -> Response:
    project = service.get(db, project_id)
    current = _as_form_data(project)
    state = FormState(settings_form.values_of(current), {})
    return _form_page(request, project, state, archived=project.archived_at is not None, shown_settings=current)


@router.post("/projects/{project_id}/edit", response_class=HTMLResponse)
def update_project(request: Request, project_id: Id, db: DbSession, _admin: CurrentAdmin, form: Submitted) -> Response:
    project = service.get(db, project_id)
    state = settings_form.read_form(form, base=_as_form_data(project))
    archived = _checked(form, "archived") if "archived" in form else project.archived_at is not None
    if state.data is not None:
        try:
            update = ProjectUpdate(
                **state.data.model_dump(exclude={"settings"}),
                settings=state.data.settings.model_dump(mode="json"),
                archived=archived,
            )
            service.update(db, project, update)
        except ValidationError as exc:
            state.errors.update(settings_form.field_errors(exc))
        except service.ProjectError as exc:
            _service_error(state, str(exc))
        else:
            return RedirectResponse(f"/projects/{project.id}", status_code=303)
        db.rollback()
    return _form_page(request, project, state, archived=archived, shown_settings=_as_form_data(project),
                      status_code=422)
