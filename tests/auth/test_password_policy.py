"""The password policy beyond length: common, repetitive and sequential passwords and ones containing the
e-mail's local part are refused with a message at the field, wherever a password is chosen: the password
change, reset and invite links, and `prefloop users create --password-stdin` (issue 16)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth import service as auth
from app.auth.passwords import password_problem
from app.auth.secrets import generate_password
from app.models import User
from tests.conftest import TEST_SECRET
from tests.factories import PASSWORD, csrf_from, login, make_user

REFUSED = {
    "Password2024!": "most common", "p4ssw0rd!!": "most common", "qwertyuiop": "most common",
    "Letmein2023": "most common", "trustno1234": "most common", "aaaaaaaaaa": "repeats", "abababab12": "repeats",
    "summersummer": "repeats", "1234567890": "neighbouring", "abcdefghij": "neighbouring",
    "9876543210": "neighbouring",
}
ACCEPTED = ["correct horse battery staple", "a brand new passphrase", "Zebra-Kettle-42", "tangerine moon rivers"]


@pytest.mark.parametrize("password", sorted(REFUSED))
def test_weak_passwords_are_refused(password: str) -> None:
    problem = password_problem(password)
    assert problem is not None and REFUSED[password] in problem and problem.startswith("password ")


def test_good_passwords_and_generated_ones_pass() -> None:
    for password in ACCEPTED:
        assert password_problem(password, "someone@example.org") is None, password
    assert all(password_problem(generate_password()) is None for _ in range(500))


def test_the_e_mail_local_part_is_refused() -> None:
    assert "e-mail" in (password_problem("Alice.Smith-2024", "alice.smith@example.org") or "")
    assert password_problem("Alice.Smith-2024", "bob@example.org") is None


def _field_error(html: str, field: str) -> str:
    match = re.search(rf'id="{field}-error" role="alert">([^<]*)<', html)
    assert match, f"no error at the {field} field"
    return match.group(1)


def test_every_form_that_sets_a_password_refuses_a_weak_one(client: TestClient, db: Session) -> None:
    admin, user = make_user(db, "admin"), make_user(db, email="dana.lee@example.org")
    db.commit()
    # The password change on the account page.
    token = login(client, user.email)
    weak = client.post("/account/password", data={"csrf_token": token, "current_password": PASSWORD,
                                                  "new_password": "Password2024!", "confirm_password": "Password2024!"})
    assert weak.status_code == 400 and "most common" in _field_error(weak.text, "new_password")
    mine = client.post("/account/password", data={"csrf_token": token, "current_password": PASSWORD,
                                                  "new_password": "danalee-rocks", "confirm_password": "danalee-rocks"})
    assert mine.status_code == 400 and "e-mail" in _field_error(mine.text, "new_password")

    admin_client = TestClient(client.app)
    admin_token = login(admin_client, admin.email)
    page = admin_client.post(f"/admin/users/{user.id}/reset-link", data={"csrf_token": admin_token}).text
    reset = re.search(r'id="issued-link">[^<]*?(/reset/pfa_[A-Za-z0-9_-]+)<', page)
    page = admin_client.post("/admin/users/invite", data={"csrf_token": admin_token, "email": "new.one@example.org",
                                                          "role": "annotator"}).text
    invite = re.search(r'id="issued-link">[^<]*?(/invite/pfa_[A-Za-z0-9_-]+)<', page)
    assert reset and invite
    stranger = TestClient(client.app)
    for path, fields in ((reset.group(1), {}), (invite.group(1), {"display_name": "New One"})):
        form = csrf_from(stranger.get(path).text)
        refused = stranger.post(path, data={"csrf_token": form, "new_password": "1234567890",
                                            "confirm_password": "1234567890", **fields})
        assert refused.status_code == 400 and "neighbouring" in _field_error(refused.text, "new_password"), path
    assert db.scalar(select(User).where(User.email == "new.one@example.org")) is None  # the invite is still open


def test_create_user_refuses_a_weak_password(db: Session) -> None:
    with pytest.raises(auth.AuthError, match="most common"):
        auth.create_user(db, "weak@example.org", "annotator", password="iloveyou12")


def test_the_cli_refuses_a_weak_password_in_one_line(db_url: str) -> None:
    env = dict(os.environ, PREFLOOP_DATABASE_URL=db_url, PREFLOOP_ENV="test", PREFLOOP_SECRET_KEY=TEST_SECRET)
    done = subprocess.run([sys.executable, "-m", "app.cli", "users", "create", "cli.weak@example.org",
                           "--password-stdin"], input="qwertyuiop123\n", env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0 and done.stderr.strip() == (
        "error: password is one of the most common passwords; choose one nobody would guess, "
        "such as a few unrelated words")
