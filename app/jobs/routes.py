"""Admin pages and JSON for jobs: all jobs, a project's jobs with the loop controls, one job with its log,
a self-replacing progress fragment, cancel, retry, "run the loop now" and the scheduler settings form."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth.deps import ApiAdmin, CurrentAdmin, DbSession
from app.errors import Invalid
from app.jobs import queue, views
from app.jobs.schemas import JobOut, LoopStatusOut
from app.models import Job
from app.models.enums import JobStatus
from app.projects import service as projects
from app.projects.deps import PathProject
from app.projects.schemas import ProjectUpdate
from app.scheduler import service as scheduler
from app.web.paths import Id
from app.web.templating import render

router = APIRouter(tags=["jobs"])
STATUS_FILTERS = tuple(JobStatus)  # `status in JobStatus` raises on Python 3.11


def path_job(job_id: Id, db: DbSession) -> Job:
    """The job of the path's `{job_id}` (404 when there is none); declared after the route's role guard."""
    job = queue.find(db, job_id)
    if job is None:
        raise queue.JobNotFound(f"job {job_id} not found")
    return job


PathJob = Annotated[Job, Depends(path_job)]


def _statuses(status: str | None) -> list[str] | None:
    if not status:
        return None
    if status not in STATUS_FILTERS:
        raise Invalid(f"status must be one of {', '.join(STATUS_FILTERS)}")
    return [status]


@router.get("/admin/jobs", response_class=HTMLResponse)
def all_jobs(request: Request, db: DbSession, _admin: CurrentAdmin, status: str | None = None) -> Response:
    jobs = queue.list_jobs(db, statuses=_statuses(status), limit=200)
    return render(request, "jobs/list.html", {"jobs": jobs, "project": None, "status": status or "",
                                              "filters": STATUS_FILTERS,
                                              "live_url": views.live_url("/admin/jobs/live", status)})


@router.get("/admin/jobs/live", response_class=HTMLResponse)
def all_jobs_live(request: Request, db: DbSession, _admin: CurrentAdmin, status: str | None = None) -> Response:
    """The job table of /admin/jobs alone; it polls itself (every 5 s while a job is active, 30 s otherwise)."""
    jobs = queue.list_jobs(db, statuses=_statuses(status), limit=200)
    return render(request, "jobs/_table.html", {"jobs": jobs, "project": None, "status": status or "",
                                                "live_url": views.live_url("/admin/jobs/live", status)})


@router.get("/projects/{project_id}/jobs", response_class=HTMLResponse)
def project_jobs(request: Request, db: DbSession, _admin: CurrentAdmin, project: PathProject,
                 status: str | None = None, message: str | None = None) -> Response:
    """The loop page; an htmx request gets just the live loop status (block `loop_status`)."""
    jobs = queue.list_jobs(db, project_id=project.id, statuses=_statuses(status), limit=200)
    return render(request, "jobs/list.html", {
        "jobs": jobs, "project": project, "status": status or "", "filters": STATUS_FILTERS,
        "loop": scheduler.status(db, project), "schedule": projects.settings_of(project).schedule,
        "message": message, "live_url": views.live_url(f"/projects/{project.id}/jobs/live", status),
    }, block="loop_status")


@router.get("/projects/{project_id}/jobs/live", response_class=HTMLResponse)
def project_jobs_live(request: Request, db: DbSession, _admin: CurrentAdmin, project: PathProject,
                      status: str | None = None) -> Response:
    """The project's job table alone; it polls itself like /admin/jobs/live."""
    jobs = queue.list_jobs(db, project_id=project.id, statuses=_statuses(status), limit=200)
    return render(request, "jobs/_table.html", {
        "jobs": jobs, "project": project, "status": status or "",
        "live_url": views.live_url(f"/projects/{project.id}/jobs/live", status)})


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, db: DbSession, _admin: CurrentAdmin, job: PathJob) -> Response:
    return render(request, "jobs/detail.html", {
        "job": job, "events": queue.events_of(db, job.id), "children": queue.children_of(db, job.id),
        "result_rows": views.result_rows(job.result), "result_json": views.pretty_json(job.result),
        "payload_json": views.pretty_json(job.payload),
    })


@router.get("/jobs/{job_id}/progress", response_class=HTMLResponse)
def job_progress(request: Request, _admin: CurrentAdmin, job: PathJob) -> Response:
    """The progress fragment; it polls itself every 2 s while the job is active and stops when it is not."""
    return render(request, "jobs/progress.html", {"job": job})


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: Id, db: DbSession, admin: CurrentAdmin) -> Response:
    queue.cancel(db, job_id, by=admin.email)  # JobNotFound (404) when there is no such job
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.post("/jobs/{job_id}/retry")
def retry_job(job_id: Id, db: DbSession, admin: CurrentAdmin) -> Response:
    queue.retry(db, job_id, by=admin.email)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.post("/projects/{project_id}/loop/run")
def run_loop(db: DbSession, admin: CurrentAdmin, project: PathProject) -> Response:
    job = scheduler.run_loop_now(db, project, requested_by=admin.email)
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


@router.post("/projects/{project_id}/loop/sft")
def run_sft(db: DbSession, admin: CurrentAdmin, project: PathProject) -> Response:
    job = scheduler.run_sft_now(db, project, requested_by=admin.email)
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


@router.post("/projects/{project_id}/schedule")
def save_schedule(
    db: DbSession,
    _admin: CurrentAdmin,
    project: PathProject,
    retrain_every: Annotated[int, Form(ge=1, le=10_000_000)],
    prompts_per_round: Annotated[int, Form(ge=1, le=10_000_000)],
    enabled: Annotated[bool, Form()] = False,
    interval_minutes: Annotated[int, Form(ge=0, le=525_600)] = 0,
) -> Response:
    patch = {"schedule": {"enabled": enabled, "retrain_every": retrain_every, "prompts_per_round": prompts_per_round,
                          "interval_minutes": interval_minutes}}
    projects.update(db, project, ProjectUpdate(settings=patch))  # a ProjectError is a 422
    return RedirectResponse(f"/projects/{project.id}/jobs?message=saved", status_code=303)


# --- JSON -------------------------------------------------------------------------------------------------


@router.get("/api/projects/{project_id}/jobs", response_model=list[JobOut])
def api_project_jobs(db: DbSession, _admin: ApiAdmin, project: PathProject,
                     status: str | None = None) -> list[JobOut]:
    jobs = queue.list_jobs(db, project_id=project.id, statuses=_statuses(status), limit=500)
    return [JobOut.model_validate(j) for j in jobs]


@router.get("/api/jobs/{job_id}", response_model=JobOut)
def api_job(_admin: ApiAdmin, job: PathJob) -> JobOut:
    return JobOut.model_validate(job)


@router.post("/api/jobs/{job_id}/cancel", response_model=JobOut)
def api_cancel(job_id: Id, db: DbSession, admin: ApiAdmin) -> JobOut:
    return JobOut.model_validate(queue.cancel(db, job_id, by=admin.email))


@router.post("/api/jobs/{job_id}/retry", response_model=JobOut)
def api_retry(job_id: Id, db: DbSession, admin: ApiAdmin) -> JobOut:
    return JobOut.model_validate(queue.retry(db, job_id, by=admin.email))


@router.get("/api/projects/{project_id}/loop", response_model=LoopStatusOut)
def api_loop_status(db: DbSession, _admin: ApiAdmin, project: PathProject) -> LoopStatusOut:
    """Where the loop stands and, in words, what it waits for."""
    return LoopStatusOut.of(scheduler.status(db, project))


@router.post("/api/projects/{project_id}/loop/run", response_model=JobOut)
def api_run_loop(db: DbSession, admin: ApiAdmin, project: PathProject) -> JobOut:
    return JobOut.model_validate(scheduler.run_loop_now(db, project, requested_by=admin.email))


@router.post("/api/projects/{project_id}/loop/sft", response_model=JobOut)
def api_run_sft(db: DbSession, admin: ApiAdmin, project: PathProject) -> JobOut:
    """Train the SFT version on the project's demonstrations now (stage one of the loop)."""
    return JobOut.model_validate(scheduler.run_sft_now(db, project, requested_by=admin.email))
