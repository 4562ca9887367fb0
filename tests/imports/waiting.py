"""Waiting for a background import to finish without sleeping: join the runner's future, then read its status."""

from __future__ import annotations

import re
from typing import Any, cast

from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response

from app.imports.runner import ImportRunner

_STATUS_LINK = re.compile(r'hx-get="(/projects/\d+/imports/(\d+))"')


def runner_of(client: TestClient) -> ImportRunner:
    return cast(ImportRunner, cast(FastAPI, client.app).state.import_runner)


def finish_api(client: TestClient, started: Response, headers: dict[str, str]) -> dict[str, Any]:
    """The final status of an import the API accepted (202)."""
    assert started.status_code == 202, started.text
    body = started.json()
    runner_of(client).wait(body["import_id"], timeout=120)
    status = client.get(body["status_url"], headers=headers)
    assert status.status_code == 200, status.text
    result: dict[str, Any] = status.json()
    return result


def finish_page(client: TestClient, started: Response) -> Response:
    """The upload page's report once the import it started (202, a polling progress fragment) finished."""
    assert started.status_code == 202, started.text
    found = _STATUS_LINK.search(started.text)
    assert found, "the upload answer has no polling progress fragment"
    runner_of(client).wait(int(found.group(2)), timeout=120)
    return client.get(found.group(1))
