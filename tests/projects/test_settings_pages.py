"""The new-project and edit pages as forms (issue 14, item 1): the page's own fields post back unchanged, a
refused form comes back (422) with every typed value and the message beside its field, and a valid one saves."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Project
from app.projects.service import settings_of
from tests.factories import login, make_project, make_user


class _Form(HTMLParser):
    """The fields the project form would submit, as a browser collects them (ticked boxes only)."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self._textarea: str | None = None
        self._select: str | None = None
        self._options: list[tuple[str, bool]] = []
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and "/logout" not in a.get("action", ""):
            self._in_form = True
        if not self._in_form or "name" not in a and tag != "option":
            return
        if tag == "input" and (a.get("type") != "checkbox" or "checked" in a):
            self.fields.append((a["name"], a.get("value", "")))
        elif tag == "textarea":
            self._textarea = a["name"]
            self.fields.append((a["name"], ""))
        elif tag == "select":
            self._select, self._options = a["name"], []
        elif tag == "option" and self._select:
            self._options.append((a.get("value", ""), "selected" in a))

    def handle_data(self, data: str) -> None:
        if self._textarea:
            name, text = self.fields[-1]
            self.fields[-1] = (name, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None
        elif tag == "select" and self._select:
            chosen = [v for v, selected in self._options if selected] or [self._options[0][0]]
            self.fields.append((self._select, chosen[0]))
            self._select = None
        elif tag == "form":
            self._in_form = False


def _fields(html: str) -> list[tuple[str, str]]:
    parser = _Form()
    parser.feed(html)
    return parser.fields


def _data(fields: list[tuple[str, str]]) -> dict[str, list[str]]:
    """The fields as the test client posts them (repeated names as lists, in order)."""
    data: dict[str, list[str]] = {}
    for name, value in fields:
        data.setdefault(name, []).append(value)
    return data


def _set(fields: list[tuple[str, str]], **values: str) -> list[tuple[str, str]]:
    changes = {k.replace("__", "."): v for k, v in values.items()}
    return [(k, changes.get(k, v)) for k, v in fields]


def _error_at(html: str, dom_id: str) -> str:
    match = re.search(rf'<p class="field-error" id="{dom_id}-error">([^<]*)</p>', html)
    assert match, f"no message at {dom_id}"
    return match.group(1)


def _admin(client: TestClient, db: Session) -> None:
    admin = make_user(db, "admin")
    db.commit()
    login(client, admin.email)


def test_the_edit_page_posts_back_every_setting_unchanged(client: TestClient, db: Session) -> None:
    project = make_project(db, name="kept", settings={"training": {"kl_beta": 0.05, "rm_lr": 3e-5},
                                                       "labeling": {"flags": ["a", "b"], "layout": "side-by-side"}})
    _admin(client, db)
    before = settings_of(project).model_dump()
    page = client.get(f"/projects/{project.id}/edit")
    assert page.status_code == 200
    for group in ("Labeling", "Quality", "Loop", "Sampling", "Training"):
        assert f"<legend>{group}</legend>" in page.text
    assert "default 0.02" in page.text and "Advanced (JSON, read-only)" in page.text
    response = client.post(f"/projects/{project.id}/edit", data=_data(_fields(page.text)), follow_redirects=False)
    assert response.status_code == 303, response.text
    db.expire_all()
    assert settings_of(db.get(Project, project.id)).model_dump() == before  # type: ignore[arg-type]


def test_a_refused_edit_keeps_the_typed_values_and_names_the_field(client: TestClient, db: Session) -> None:
    project = make_project(db, name="edited")
    _admin(client, db)
    stored = dict(project.settings)
    fields = _set(_fields(client.get(f"/projects/{project.id}/edit").text), name="renamed", k_min="9", k_max="4",
                  training__kl_beta="0.5", sampling__temperature="lukewarm")
    fields = [f for f in fields if f[0] != "labeling.flags"] + [("labeling.flags", "too vague"), ("labeling.flags", "")]
    response = client.post(f"/projects/{project.id}/edit", data=_data(fields))
    assert response.status_code == 422
    html = response.text
    assert _error_at(html, "f-k-max") == "K max (4) must be at least K min (9)"
    assert _error_at(html, "f-sampling-temperature") == "Temperature must be a number, not &#39;lukewarm&#39;"
    assert "Value error" not in html and "2 settings need fixing; nothing was saved." in html
    kept = dict(_fields(html))
    assert (kept["name"], kept["k_min"], kept["k_max"], kept["training.kl_beta"], kept["sampling.temperature"]) == (
        "renamed", "9", "4", "0.5", "lukewarm")
    assert [v for k, v in _fields(html) if k == "labeling.flags"] == ["too vague", ""]
    db.expire_all()
    saved = db.get(Project, project.id)
    assert saved is not None and saved.name == "edited" and saved.settings == stored and saved.k_max == 9


def test_an_edit_saves_typed_settings_and_lists(client: TestClient, db: Session) -> None:
    project = make_project(db, name="saved")
    _admin(client, db)
    fields = _set(_fields(client.get(f"/projects/{project.id}/edit").text), k_min="2", k_max="2",
                  labeling__mode="pairwise", quality__gold_rate="0.05", schedule__retrain_every="75",
                  training__rm_epochs="3")
    fields = [f for f in fields if f[0] not in ("labeling.flags", "schedule.enabled")]
    fields += [("labeling.flags", "off topic"), ("labeling.flags", " too long "), ("labeling.flags", ""),
               ("schedule.enabled", "true")]
    response = client.post(f"/projects/{project.id}/edit", data=_data(fields), follow_redirects=False)
    assert response.status_code == 303, response.text
    db.expire_all()
    saved = db.get(Project, project.id)
    assert saved is not None and (saved.k_min, saved.k_max) == (2, 2)
    cfg = settings_of(saved)
    assert cfg.labeling.flags == ["off topic", "too long"] and cfg.labeling.mode == "pairwise"
    assert (cfg.quality.gold_rate, cfg.schedule.retrain_every, cfg.schedule.enabled, cfg.training.rm_epochs) == (
        0.05, 75, True, 3)


def test_new_project_defaults_follow_its_kind(client: TestClient, db: Session) -> None:
    _admin(client, db)
    assistant_flag = "inappropriate for a customer assistant"
    summary = client.get("/projects/new?kind=summarisation")
    assert summary.status_code == 200
    flags = [v for k, v in _fields(summary.text) if k == "labeling.flags"]
    assert assistant_flag not in flags and "misses a key point" in flags
    assistant = client.get("/projects/new?kind=assistant")
    assert assistant_flag in [v for k, v in _fields(assistant.text) if k == "labeling.flags"]
    assert client.get("/projects/new?kind=poetry").status_code == 422
    response = client.post("/projects", data=_data(_set(_fields(summary.text), name="summaries")), follow_redirects=False)
    assert response.status_code == 303, response.text
    created = db.scalar(select(Project).where(Project.name == "summaries"))
    assert created is not None
    assert assistant_flag not in settings_of(created).labeling.flags
    assert settings_of(created).labeling.layout == "side-by-side"


def test_a_refused_new_project_keeps_everything_typed(client: TestClient, db: Session) -> None:
    make_project(db, name="taken")
    _admin(client, db)
    fields = _set(_fields(client.get("/projects/new?kind=chat").text), name="taken", guidelines="Be *kind*.",
                  lease_minutes="45", quality__gold_rate="0.0001")
    response = client.post("/projects", data=_data(fields))
    assert response.status_code == 422
    assert _error_at(response.text, "f-quality-gold-rate") == "Gold rate must be 0 (no gold) or at least 0.001"
    kept = dict(_fields(response.text))
    assert (kept["name"], kept["guidelines"], kept["lease_minutes"], kept["kind"]) == ("taken", "Be *kind*.", "45",
                                                                                       "chat")
    # With the gold rate fixed, the name is the one thing left, and it is said at the name.
    again = client.post("/projects", data=_data(_set(fields, quality__gold_rate="0.01")))
    assert again.status_code == 422
    assert _error_at(again.text, "f-name") == "A project named &#39;taken&#39; already exists"
    assert db.scalar(select(func.count()).select_from(Project)) == 1


def test_a_form_post_with_some_fields_keeps_the_rest(client: TestClient, db: Session) -> None:
    project = make_project(db, name="partial", settings={"labeling": {"flags": ["kept"], "likert_enabled": False}},
                           k_min=3)
    _admin(client, db)
    token = dict(_fields(client.get(f"/projects/{project.id}/edit").text))["csrf_token"]
    response = client.post(f"/projects/{project.id}/edit", data={"csrf_token": token, "lease_minutes": "50"},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    db.expire_all()
    saved = db.get(Project, project.id)
    assert saved is not None and (saved.name, saved.k_min, saved.lease_minutes) == ("partial", 3, 50)
    assert settings_of(saved).labeling.flags == ["kept"] and not settings_of(saved).labeling.likert_enabled
    db.commit()  # end the read: on SQLite an open transaction holds the lock the next request needs
    created = client.post("/projects", data={"csrf_token": token, "name": "by script", "kind": "assistant"},
                          follow_redirects=False)
    assert created.status_code == 303, created.text
    new = db.scalar(select(Project).where(Project.name == "by script"))
    assert new is not None and "inappropriate for a customer assistant" in settings_of(new).labeling.flags
