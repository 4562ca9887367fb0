"""Quality HTTP: the admin dashboard and gold pages, plot data as CSV, the recompute-weights action,
and the JSON API (`/api/projects/{id}/quality`, gold marking, weights). Parsing and rendering only."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Annotated, Any

from fastapi import APIRouter, Body, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from app.auth.deps import ApiAdmin, CurrentAdmin, DbSession
from app.errors import NotFound, Unprocessable
from app.models import Prompt
from app.projects import service as projects
from app.quality import gold_admin, plots, service, weights
from app.quality.picker import install
from app.web.paths import Id
from app.web.templating import render

install()  # the web app always claims through the quality picker (gold injection, pausing)

router = APIRouter(tags=["quality"])

CSV_TABLES = {
    "agreement": service.agreement_rows,
    "leaderboard": service.leaderboard_rows,
    "reward_models": service.reward_model_rows,
    "annotators": service.annotator_csv_rows,
}
NOTICES = {
    "weights": "Trust weights recomputed and stored on rankings and their comparisons.",
    "gold": "Gold item saved.",
    "unmarked": "The prompt is a regular prompt again.",
    "generated": "Gold items generated.",
}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _prompt(db: Session, prompt_id: int, project_id: int | None = None) -> Prompt:
    prompt = gold_admin.find_prompt(db, prompt_id)
    if prompt is None or (project_id is not None and prompt.project_id != project_id):
        raise NotFound(f"prompt {prompt_id} not found")
    return prompt


def neutralise(value: Any) -> str:
    """A CSV cell: text that a spreadsheet would read as a formula gets a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if not math.isfinite(value) else repr(round(value, 6))
    if isinstance(value, int):
        return str(value)
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_response(rows: list[dict[str, Any]], filename: str) -> Response:
    buf = io.StringIO()
    columns = list(rows[0]) if rows else []
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([neutralise(row.get(c)) for c in columns])
    return Response(
        buf.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "X-Content-Type-Options": "nosniff"},
    )


# --- pages ----------------------------------------------------------------------------------


@router.get("/projects/{project_id}/quality", response_class=HTMLResponse)
def dashboard(
    request: Request,
    project_id: Id,
    db: DbSession,
    _admin: CurrentAdmin,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    notice: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    project = projects.get(db, project_id)
    q = service.get_quality(db, project)
    consensus, pages = service.consensus_page(db, q, page)
    agreement = service.agreement_rows(q)
    board = service.leaderboard_rows(q)
    rms = service.reward_model_rows(q)
    return render(request, "quality/dashboard.html", {
        "project": project,
        "settings": projects.settings_of(project).quality,
        "q": q,
        "summary": q.report.agreement,
        "annotators": q.annotator_rows(),
        "leaderboard": board,
        "reward_models": rms,
        "agreement_svg": plots.agreement_svg(agreement),
        "leaderboard_svg": plots.leaderboard_svg(board),
        "rm_svg": plots.rm_accuracy_svg(rms),
        "consensus": consensus,
        "page": min(page, pages),
        "pages": pages,
        "notice": NOTICES.get(notice),
    }, block="consensus" if request.query_params.get("page") else None)


@router.get("/projects/{project_id}/quality/{table}.csv")
def plot_csv(project_id: Id, table: str, db: DbSession, _admin: CurrentAdmin) -> Response:
    builder = CSV_TABLES.get(table)
    if builder is None:
        raise NotFound(f"no quality table {table!r} (known: {', '.join(CSV_TABLES)})")
    project = projects.get(db, project_id)
    return csv_response(builder(service.get_quality(db, project)), f"project-{project.id}-{table}.csv")


@router.post("/projects/{project_id}/quality/weights")
def recompute_weights_action(project_id: Id, db: DbSession, _admin: CurrentAdmin) -> Response:
    weights.recompute_trust_weights(db, projects.get(db, project_id))
    return RedirectResponse(f"/projects/{project_id}/quality?notice=weights", status_code=303)


@router.get("/projects/{project_id}/quality/gold", response_class=HTMLResponse)
def gold_page(request: Request, project_id: Id, db: DbSession, _admin: CurrentAdmin,
              notice: Annotated[str, Query(max_length=20)] = "", error: str | None = None) -> Response:
    project = projects.get(db, project_id)
    items = gold_admin.gold_prompts(db, project.id)
    comps = gold_admin.completions_of(db, [p.id for p in items])
    q = service.get_quality(db, project)
    return render(request, "quality/gold.html", {
        "project": project,
        "settings": projects.settings_of(project).quality,
        "items": items,
        "completions": comps,
        "annotators": [a for a in q.annotator_rows() if a.get("gold_items")],
        "kinds": gold_admin.DEGRADE_KINDS,
        "notice": NOTICES.get(notice),
        "error": error,
    }, status_code=400 if error else 200)


@router.post("/projects/{project_id}/quality/gold", response_class=HTMLResponse)
def mark_gold_form(
    request: Request,
    project_id: Id,
    db: DbSession,
    admin: CurrentAdmin,
    prompt_id: Annotated[int, Form()],
    spec: Annotated[str, Form(max_length=20_000)],
) -> Response:
    prompt = _prompt(db, prompt_id, project_id)
    try:
        gold_admin.mark_gold(db, prompt, json.loads(spec))
    except json.JSONDecodeError as exc:
        return gold_page(request, project_id, db, admin, error=f"spec is not valid JSON: {exc.msg}")
    except gold_admin.GoldError as exc:
        return gold_page(request, project_id, db, admin, error=str(exc))
    return RedirectResponse(f"/projects/{project_id}/quality/gold?notice=gold", status_code=303)


@router.post("/projects/{project_id}/quality/gold/generate", response_class=HTMLResponse)
def generate_gold_form(
    request: Request,
    project_id: Id,
    db: DbSession,
    admin: CurrentAdmin,
    count: Annotated[int, Form(ge=1, le=1000)] = 10,
    kinds: Annotated[list[str] | None, Form()] = None,
    seed: Annotated[int, Form()] = 0,
) -> Response:
    try:
        gold_admin.generate_gold(db, projects.get(db, project_id), count, kinds or list(gold_admin.DEGRADE_KINDS), seed)
    except gold_admin.GoldError as exc:
        return gold_page(request, project_id, db, admin, error=str(exc))
    return RedirectResponse(f"/projects/{project_id}/quality/gold?notice=generated", status_code=303)


@router.post("/projects/{project_id}/quality/gold/{prompt_id}/unmark")
def unmark_gold_form(project_id: Id, prompt_id: Id, db: DbSession, _admin: CurrentAdmin) -> Response:
    gold_admin.unmark_gold(db, projects.get(db, project_id), _prompt(db, prompt_id, project_id))
    return RedirectResponse(f"/projects/{project_id}/quality/gold?notice=unmarked", status_code=303)


# --- JSON API -------------------------------------------------------------------------------


@router.get("/api/projects/{project_id}/quality")
def quality_api(project_id: Id, db: DbSession, _admin: ApiAdmin,
                fresh: Annotated[bool, Query()] = False) -> JSONResponse:
    q = service.get_quality(db, projects.get(db, project_id), fresh=fresh)
    return JSONResponse(q.to_dict())


@router.post("/api/projects/{project_id}/quality/weights")
def weights_api(project_id: Id, db: DbSession, _admin: ApiAdmin) -> dict[str, Any]:
    return weights.recompute_trust_weights(db, projects.get(db, project_id)).to_dict()


def _gold_out(prompt: Prompt) -> dict[str, Any]:
    return {"prompt_id": prompt.id, "project_id": prompt.project_id, "is_gold": prompt.is_gold,
            "gold_spec": prompt.gold_spec}


@router.put("/api/prompts/{prompt_id}/gold")
def put_gold_api(prompt_id: Id, db: DbSession, _admin: ApiAdmin,
                 spec: Annotated[Any, Body(embed=True)]) -> dict[str, Any]:
    """Body: {"spec": [{"better": "A", "worse": "C"}, {"last": "D"}, ...]} (letters or completion ids)."""
    prompt = _prompt(db, prompt_id)
    try:
        gold_admin.mark_gold(db, prompt, spec)
    except gold_admin.GoldError as exc:
        raise Unprocessable(str(exc)) from exc
    return _gold_out(prompt)


@router.delete("/api/prompts/{prompt_id}/gold")
def delete_gold_api(prompt_id: Id, db: DbSession, _admin: ApiAdmin) -> dict[str, Any]:
    prompt = _prompt(db, prompt_id)
    gold_admin.unmark_gold(db, projects.get(db, prompt.project_id), prompt)
    return _gold_out(prompt)


@router.post("/api/projects/{project_id}/gold/generate")
def generate_gold_api(
    project_id: Id,
    db: DbSession,
    _admin: ApiAdmin,
    count: Annotated[int, Body(ge=1, le=1000)] = 10,
    kinds: Annotated[list[str] | None, Body()] = None,
    seed: Annotated[int, Body()] = 0,
) -> dict[str, Any]:
    try:
        made = gold_admin.generate_gold(db, projects.get(db, project_id), count,
                                        kinds or list(gold_admin.DEGRADE_KINDS), seed)
    except gold_admin.GoldError as exc:
        raise Unprocessable(str(exc)) from exc
    return {"created": [_gold_out(p) for p in made]}
