"""Project domain logic: create, update (with settings merged and validated), archive, look up."""

from __future__ import annotations

import copy
import logging
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound, Unprocessable
from app.labeling.slots import ensure_slots
from app.models import Project, User, utcnow
from app.projects import queries
from app.projects.schemas import ProjectCreate, ProjectSettings, ProjectUpdate

log = logging.getLogger("prefloop.projects")


class ProjectError(Unprocessable, ValueError):
    """A project request that cannot be honoured (422); the message names the field."""


class ProjectNameTaken(Conflict, ProjectError):
    """Creating a project under a name another one has (409; renaming onto one stays a plain 422)."""


class ProjectNotFound(NotFound, LookupError):
    """No project with that id or name."""


def settings_of(project: Project) -> ProjectSettings:
    """The typed settings of a project (defaults filled in)."""
    return _stored_settings(project.settings)


def _stored_settings(stored: dict[str, Any] | None) -> ProjectSettings:
    """Settings as stored. Values saved before their range was checked on write (a `gold_rate` of 1e-320)
    read as their defaults, so such a project keeps working and the next save stores valid settings."""
    data = copy.deepcopy(stored or {})
    for _ in range(100):
        try:
            return ProjectSettings.model_validate(data)
        except ValidationError as exc:
            dropped = False
            for error in exc.errors():
                section, *rest = [*error["loc"], None]
                holder = data.get(section) if isinstance(section, str) else None
                if isinstance(holder, dict) and rest and rest[0] in holder:
                    del holder[rest[0]]
                    dropped = True
                elif isinstance(section, str) and section in data:
                    del data[section]
                    dropped = True
            if not dropped:
                break
    return ProjectSettings()


def create(db: Session, data: ProjectCreate, created_by: User | None) -> Project:
    if queries.by_name(db, data.name.strip()) is not None:
        raise ProjectNameTaken(f"a project named {data.name.strip()!r} already exists")
    project = Project(
        name=data.name.strip(),
        guidelines=data.guidelines,
        k_min=data.k_min,
        k_max=data.k_max,
        annotations_per_prompt=data.annotations_per_prompt,
        lease_minutes=data.lease_minutes,
        allow_fewer_than_k_min=data.allow_fewer_than_k_min,
        settings=data.settings.model_dump(mode="json"),
        created_by_id=created_by.id if created_by else None,
    )
    queries.add(db, project)
    return project


def get(db: Session, project_id: int, *, include_archived: bool = True) -> Project:
    project = queries.get(db, project_id)
    if project is None or (project.archived_at is not None and not include_archived):
        raise ProjectNotFound(f"project {project_id} not found")
    return project


def get_by_ref(db: Session, ref: str) -> Project:
    """A project by id or by exact name (the CLI accepts either)."""
    project = queries.get(db, int(ref)) if ref.isdigit() else queries.by_name(db, ref)
    if project is None:
        raise ProjectNotFound(f"project {ref!r} not found")
    return project


def list_projects(db: Session, *, include_archived: bool = False) -> list[Project]:
    return queries.list_all(db, include_archived=include_archived)


def merge_settings(current: dict[str, Any], patch: dict[str, dict[str, object]]) -> ProjectSettings:
    merged = _stored_settings(current).model_dump(mode="json")
    for section, values in patch.items():
        if section not in merged:
            raise ProjectError(f"settings.{section}: unknown section (known: {', '.join(merged)})")
        merged[section].update(values)
    try:
        return ProjectSettings.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ProjectError(f"settings.{where}: {first['msg']}") from exc


def update(db: Session, project: Project, data: ProjectUpdate) -> Project:
    if data.name is not None and data.name.strip() != project.name:
        if queries.by_name(db, data.name.strip()) is not None:
            raise ProjectError(f"a project named {data.name.strip()!r} already exists")
        project.name = data.name.strip()
    slot_inputs = (project.annotations_per_prompt, project.k_min, project.allow_fewer_than_k_min)
    for field in ("guidelines", "k_min", "k_max", "annotations_per_prompt", "lease_minutes", "allow_fewer_than_k_min"):
        value = getattr(data, field)
        if value is not None:
            setattr(project, field, value)
    if project.k_max < project.k_min:
        raise ProjectError(f"k_max ({project.k_max}) must be at least k_min ({project.k_min})")
    if data.settings is not None:
        project.settings = merge_settings(project.settings, data.settings).model_dump(mode="json")
    if settings_of(project).labeling.mode == "pairwise" and project.k_max != 2:
        raise ProjectError(f"pairwise mode compares two answers: k_max must be 2, not {project.k_max}")
    if data.archived is not None:
        project.archived_at = utcnow() if data.archived else None
    db.flush()
    if (project.annotations_per_prompt, project.k_min, project.allow_fewer_than_k_min) != slot_inputs:
        ensure_slots(db, project)  # a higher N or a looser K minimum makes more slots due
    changed = sorted(data.model_dump(exclude_none=True))  # the fields sent, not their values (guidelines are long)
    log.info("project %s updated: %s", project.id, ", ".join(changed),
             extra={"event": "admin.project_updated", "project_id": project.id, "fields": changed})
    return project
