"""Data browser HTTP: admins only, CSRF on every action, search and filters from the query string, htmx
fragments, untrusted text escaped inside hx-disable containers, the confirmation page's counts, and the
archive, delete and gold actions."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.models import Prompt
from tests.browse.scene import FLAG, SKIP_REASON, Scene, build
from tests.factories import login


@pytest.fixture
def scene(db: Session) -> Scene:
    return build(db)


def _base(scene: Scene) -> str:
    return f"/projects/{scene.project.id}/data"


def test_annotators_and_signed_out_callers_get_nothing(client: TestClient, scene: Scene) -> None:
    base = _base(scene)
    pages = [f"{base}/prompts", f"{base}/prompts/{scene.aurora.id}", f"{base}/prompts/{scene.aurora.id}/remove",
             f"{base}/rankings", f"{base}/rankings/{scene.aurora_ranking.id}", f"{base}/skipped",
             f"{base}/skipped.csv"]
    for path in pages:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login"), path
    token = login(client, scene.alice.email)
    for path in pages:
        assert client.get(path, follow_redirects=False).status_code == 403, path
    gold = client.post(f"{base}/rankings/{scene.aurora_ranking.id}/gold", headers={"X-CSRF-Token": token})
    assert gold.status_code == 403


def test_prompt_list_search_filters_and_fragment(client: TestClient, scene: Scene) -> None:
    login(client, scene.admin.email)
    page = client.get(f"{_base(scene)}/prompts", params={"q": "tromsø"})
    assert page.status_code == 200 and "<html" in page.text
    assert f"/data/prompts/{scene.aurora.id}" in page.text and f"/data/prompts/{scene.plain.id}\"" not in page.text
    assert "1 prompt matching" in page.text
    fragment = client.get(f"{_base(scene)}/prompts", params={"q": "100%"}, headers={"HX-Request": "true"})
    assert "<html" not in fragment.text and 'id="results"' in fragment.text
    assert f"/data/prompts/{scene.wild.id}" in fragment.text and "Is 100% of pure_water wet?" in fragment.text
    filtered = client.get(f"{_base(scene)}/prompts", params={"annotator": str(scene.alice.id), "status": "",
                                                              "model_version": "", "round": "", "gold": ""})
    assert filtered.status_code == 200 and f"/data/prompts/{scene.aurora.id}" in filtered.text
    assert f"/data/prompts/{scene.wild.id}\"" not in filtered.text


@pytest.mark.parametrize("params", [{"status": "bogus"}, {"annotator": "abc"}, {"page": "0"}, {"page": "401"},
                                    {"q": "x" * 201}, {"round": "-1"}])
def test_bad_filters_are_refused_naming_the_field(client: TestClient, scene: Scene, params: dict[str, str]) -> None:
    login(client, scene.admin.email)
    response = client.get(f"{_base(scene)}/prompts", params=params)
    assert response.status_code == 422
    assert next(iter(params)) in response.text


def test_prompt_page_lists_completions_and_rankings(client: TestClient, scene: Scene) -> None:
    login(client, scene.admin.email)
    page = client.get(f"{_base(scene)}/prompts/{scene.plain.id}")
    assert page.status_code == 200
    assert "policy-r1" in page.text and "Feed it flour daily." in page.text and "Nobody has ranked" in page.text
    aurora = client.get(f"{_base(scene)}/prompts/{scene.aurora.id}").text
    assert "A &gt; B = C &gt; D" in aurora and "Alice" in aurora
    other = client.get(f"/projects/{scene.project.id + 999}/data/prompts/{scene.aurora.id}")
    assert other.status_code == 404


def test_ranking_page_shows_what_the_annotator_saw_escaped(client: TestClient, scene: Scene) -> None:
    login(client, scene.admin.email)
    page = client.get(f"{_base(scene)}/rankings/{scene.aurora_ranking.id}").text
    assert page.count('class="big-letter"') == 9 and "A &gt; B = C &gt; D &gt; E" in page
    assert FLAG in page and "42 s active" in page and "1.6 min on the page" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert 'hx-disable data-testid="rationale"' in page
    assert page.count("tied</span>") == 2


def test_mark_gold_needs_csrf_and_uses_the_ranking(client: TestClient, db: Session, scene: Scene) -> None:
    token = login(client, scene.admin.email)
    url = f"{_base(scene)}/rankings/{scene.aurora_ranking.id}/gold"
    assert client.post(url, follow_redirects=False).status_code == 403
    response = client.post(url, data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].endswith("?notice=gold")
    db.expire_all()
    prompt = db.get(Prompt, scene.aurora.id)
    assert prompt is not None and prompt.is_gold and len(prompt.gold_spec["constraints"]) == 9  # type: ignore[index]
    db.commit()
    assert "Gold item saved from this ranking" in client.get(response.headers["location"]).text


def test_confirmation_counts_then_archive_or_delete(client: TestClient, db: Session, scene: Scene) -> None:
    token = login(client, scene.admin.email)
    base, plain_id = _base(scene), scene.plain.id
    confirm = client.get(f"{base}/prompts/{scene.aurora.id}/remove").text
    assert "Deleting is not offered" in confirm and 'data-testid="delete"' not in confirm
    assert "<tr><th>Answers (completions)</th><td>9</td></tr>" in confirm
    refused = client.post(f"{base}/prompts/{scene.aurora.id}/delete", data={"csrf_token": token})
    assert refused.status_code == 409 and "archive it instead" in refused.text
    archived = client.post(f"{base}/prompts/{scene.aurora.id}/archive", data={"csrf_token": token},
                           follow_redirects=False)
    assert archived.status_code == 303
    assert "Prompt archived" in client.get(archived.headers["location"]).text
    plain = client.get(f"{base}/prompts/{scene.plain.id}/remove").text
    assert 'data-testid="delete"' in plain and "4 answer(s)" in plain
    deleted = client.post(f"{base}/prompts/{scene.plain.id}/delete", data={"csrf_token": token},
                          follow_redirects=False)
    assert deleted.status_code == 303
    db.expire_all()
    assert db.get(Prompt, plain_id) is None
    db.commit()


def test_skipped_page_and_csv(client: TestClient, scene: Scene) -> None:
    login(client, scene.admin.email)
    page = client.get(f"{_base(scene)}/skipped").text
    assert "I do not read Norwegian" in page and "Bob" in page
    csv_response = client.get(f"{_base(scene)}/skipped.csv")
    assert csv_response.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv_response.headers["content-disposition"]
    assert "'" + SKIP_REASON.replace('"', '""') in csv_response.text


def test_project_page_links_to_the_data_browser(client: TestClient, scene: Scene) -> None:
    login(client, scene.admin.email)
    assert f'href="/projects/{scene.project.id}/data/prompts"' in client.get(f"/projects/{scene.project.id}").text
