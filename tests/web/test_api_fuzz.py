"""Property-based API tests (issue 16): schemathesis generates requests for every operation the app publishes
in its OpenAPI document, valid and invalid, and sends them in-process (ASGI) with an admin's and an annotator's
bearer token. No answer may be a 5xx, and each must match what the document says of its headers and body.

Bounded and reproducible: a fixed number of examples per operation from a fixed seed, no deadline.
PREFLOOP_FUZZ_EXAMPLES sets the number (more for a deeper local run)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_headers_conformance, response_schema_conformance
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from app.db import make_session_factory
from app.main import create_app
from app.models import ApiToken, User
from app.settings import Settings
from tests.conftest import TEST_SECRET, _wipe
from tests.factories import api_token, make_user
from tests.labeling.helpers import seeded_project

EXAMPLES = int(os.environ.get("PREFLOOP_FUZZ_EXAMPLES", "15"))
# Not yet checked, because the OpenAPI document does not list them yet (the follow-up of issue 16):
# `status_code_conformance` (no operation documents its 400/403/404/409 answers) and
# `content_type_conformance` (browser routes send their errors as the HTML error page, documented as
# application/problem+json; /metrics and GET /projects are documented as JSON).
CHECKS = [not_a_server_error, response_headers_conformance, response_schema_conformance]


def _settings(database_url: str, data_dir: Path) -> Settings:
    return Settings(env="test", database_url=database_url, secret_key=TEST_SECRET, data_dir=data_dir)


def _published_schema() -> schemathesis.BaseSchema:
    """What /openapi.json serves (`app.openapi()`), read at collection from an app that only describes itself
    (it never reaches its database); the requests go to the per-dialect app below."""
    document = create_app(_settings("sqlite://", Path("unused"))).openapi()
    config = schemathesis.Config.from_dict({"seed": 16, "generation": {"max-examples": EXAMPLES}})
    return schemathesis.openapi.from_dict(document, config=config)


@dataclass
class Fuzzing:
    """The app under test, and the callers the generated requests are sent as."""

    app: FastAPI
    headers: dict[str, dict[str, str]]
    user_ids: list[int]
    db: Session

    def restore(self) -> None:
        """Undo what a generated request may have done to the callers themselves (deactivated a user whose id
        it guessed, revoked or shortened a token), so every example runs as a working admin or annotator."""
        self.db.execute(update(User).where(User.id.in_(self.user_ids)).values(is_active=True))
        self.db.execute(update(ApiToken).where(ApiToken.user_id.in_(self.user_ids))
                        .values(revoked_at=None, expires_at=None))
        self.db.commit()


@pytest.fixture(scope="module")
def fuzzing(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzing]:
    """One app and one database state per dialect, shared by every operation: what one operation's requests
    created, the next operation's requests may find."""
    app = create_app(_settings(str(engine.url.render_as_string(hide_password=False)),
                               tmp_path_factory.mktemp("fuzz")), engine=engine)
    db = make_session_factory(engine)()
    try:
        admin, annotator = make_user(db, "admin"), make_user(db)
        seeded_project(db, prompts=3, k=4)
        headers = {"admin": api_token(db, admin), "annotator": api_token(db, annotator)}
        db.commit()
        yield Fuzzing(app=app, headers=headers, user_ids=[admin.id, annotator.id], db=db)
    finally:
        db.rollback()
        db.close()
        _wipe(engine)


schema = _published_schema()


@pytest.mark.parametrize("role", ["admin", "annotator"])
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_fuzz(case: Case, fuzzing: Fuzzing, role: str) -> None:
    fuzzing.restore()
    case.call_and_validate(app=fuzzing.app, headers=fuzzing.headers[role], checks=CHECKS)
