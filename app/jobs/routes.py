"""Admin pages and JSON for jobs: all jobs, a project's jobs with the loop controls, one job with its log,
a self-replacing progress fragment, cancel, retry, "run the loop now" and the scheduler settings form."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth.deps import ApiAdmin, CurrentAdmin, DbSession
from app.jobs import queue
from app.jobs.schemas import JobOut, LoopStatusOut
from app.models import Job
from app.projects import service as projects
from app.projects.schemas import ProjectUpdate
from app.scheduler import service as scheduler
from app.web.paths import Id
from app.web.templating import render

router = APIRouter(tags=["jobs"])
STATUS_FILTERS = ("queued", "running", "succeeded", "failed", "cancelled")


def _job(db: DbSession, job_id: int) -> Job:
    job = queue.find(db, job_id)
    if job is None:
        raise HTTPException(status_code=404, detail=f"job {job_id} not found")
    return job


def _statuses(status: str | None) -> list[str] | None:
    if not status:
        return None
    if status not in STATUS_FILTERS:
        raise HTTPException(status_code=400, detail=f"status must be one of {', '.join(STATUS_FILTERS)}")
    return [status]


@router.get("/admin/jobs", response_class=HTMLResponse)
def all_jobs(request: Request, db: DbSession, _admin: CurrentAdmin, status: str | None = None) -> Response:
    jobs = queue.list_jobs(db, statuses=_statuses(status), limit=200)
    return render(request, "jobs/list.html", {"jobs": jobs, "project": None, "status": status or "",
                                              "filters": STATUS_FILTERS})


@router.get("/projects/{project_id}/jobs", response_class=HTMLResponse)
def project_jobs(request: Request, project_id: Id, db: DbSession, _admin: CurrentAdmin,
                 status: str | None = None, message: str | None = None) -> Response:
    """The loop page; an htmx request gets just the live loop status (block `loop_status`)."""
    project = projects.get(db, project_id)
    jobs = queue.list_jobs(db, project_id=project.id, statuses=_statuses(status), limit=200)
    return render(request, "jobs/list.html", {
        "jobs": jobs, "project": project, "status": status or "", "filters": STATUS_FILTERS,
        "loop": scheduler.status(db, project), "schedule": projects.settings_of(project).schedule,
        "message": message,
    }, block="loop_status")


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: Id, db: DbSession, _admin: CurrentAdmin) -> Response:
    job = _job(db, job_id)
    return render(request, "jobs/detail.html", {
        "job": job, "events": queue.events_of(db, job.id), "children": queue.children_of(db, job.id),
    })


@router.get("/jobs/{job_id}/progress", response_class=HTMLResponse)
def job_progress(request: Request, job_id: Id, db: DbSession, _admin: CurrentAdmin) -> Response:
    """The progress fragment; it polls itself every 2 s while the job is active and stops when it is not."""
    return render(request, "jobs/progress.html", {"job": _job(db, job_id)})


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: Id, db: DbSession, admin: CurrentAdmin) -> Response:
    queue.cancel(db, _job(db, job_id).id, by=admin.email)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.post("/jobs/{job_id}/retry")
def retry_job(job_id: Id, db: DbSession, admin: CurrentAdmin) -> Response:
    queue.retry(db, _job(db, job_id).id, by=admin.email)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.post("/projects/{project_id}/loop/run")
def run_loop(project_id: Id, db: DbSession, admin: CurrentAdmin) -> Response:
    job = scheduler.run_loop_now(db, projects.get(db, project_id), requested_by=admin.email)
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


@router.post("/projects/{project_id}/loop/sft")
def run_sft(project_id: Id, db: DbSession, admin: CurrentAdmin) -> Response:
    job = scheduler.run_sft_now(db, projects.get(db, project_id), requested_by=admin.email)
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


@router.post("/projects/{project_id}/schedule")
def save_schedule(
    project_id: Id,
    db: DbSession,
    _admin: CurrentAdmin,
    retrain_every: Annotated[int, Form(ge=1, le=10_000_000)],
    prompts_per_round: Annotated[int, Form(ge=1, le=10_000_000)],
    enabled: Annotated[bool, Form()] = False,
    interval_minutes: Annotated[int, Form(ge=0, le=525_600)] = 0,
) -> Response:
    project = projects.get(db, project_id)
    patch = {"schedule": {"enabled": enabled, "retrain_every": retrain_every, "prompts_per_round": prompts_per_round,
                          "interval_minutes": interval_minutes}}
    try:
        projects.update(db, project, ProjectUpdate(settings=patch))
    except projects.ProjectError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    return RedirectResponse(f"/projects/{project.id}/jobs?message=saved", status_code=303)


# --- JSON -------------------------------------------------------------------------------------------------


@router.get("/api/projects/{project_id}/jobs", response_model=list[JobOut])
def api_project_jobs(project_id: Id, db: DbSession, _admin: ApiAdmin, status: str | None = None) -> list[JobOut]:
    project = projects.get(db, project_id)
    jobs = queue.list_jobs(db, project_id=project.id, statuses=_statuses(status), limit=500)
    return [JobOut.model_validate(j) for j in jobs]


@router.get("/api/jobs/{job_id}", response_model=JobOut)
def api_job(job_id: Id, db: DbSession, _admin: ApiAdmin) -> JobOut:
    return JobOut.model_validate(_job(db, job_id))


@router.post("/api/jobs/{job_id}/cancel", response_model=JobOut)
def api_cancel(job_id: Id, db: DbSession, admin: ApiAdmin) -> JobOut:
    return JobOut.model_validate(queue.cancel(db, _job(db, job_id).id, by=admin.email))


@router.post("/api/jobs/{job_id}/retry", response_model=JobOut)
def api_retry(job_id: Id, db: DbSession, admin: ApiAdmin) -> JobOut:
    return JobOut.model_validate(queue.retry(db, _job(db, job_id).id, by=admin.email))


@router.get("/api/projects/{project_id}/loop", response_model=LoopStatusOut)
def api_loop_status(project_id: Id, db: DbSession, _admin: ApiAdmin) -> LoopStatusOut:
    """Where the loop stands and, in words, what it waits for."""
    return LoopStatusOut.of(scheduler.status(db, projects.get(db, project_id)))


@router.post("/api/projects/{project_id}/loop/run", response_model=JobOut)
def api_run_loop(project_id: Id, db: DbSession, admin: ApiAdmin) -> JobOut:
    return JobOut.model_validate(scheduler.run_loop_now(db, projects.get(db, project_id), requested_by=admin.email))


@router.post("/api/projects/{project_id}/loop/sft", response_model=JobOut)
def api_run_sft(project_id: Id, db: DbSession, admin: ApiAdmin) -> JobOut:
    """Train the SFT version on the project's demonstrations now (stage one of the loop)."""
    return JobOut.model_validate(scheduler.run_sft_now(db, projects.get(db, project_id), requested_by=admin.email))
