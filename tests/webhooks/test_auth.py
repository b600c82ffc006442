"""Sign-in and access: tokens for scripts, sessions with CSRF for people, admin and viewer roles."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from werkzeug.security import generate_password_hash

from builder.accounts.users import add_user, create_token, revoke_token
from builder.db.models import User
from tests.conftest import signed_in

BUILDHOOK = str(Path(sys.executable).with_name("buildhook"))
TRIGGER = {"provider": "github", "repository": "acme/auth", "clone_url": "file:///x", "secret": "s",
           "image": "acme/auth"}


def make_user(app, role: str, password: str = "correct horse battery"):
    name = f"{role}-{uuid.uuid4().hex[:6]}"
    with app.extensions["buildhook"].sessions() as session:
        user = add_user(session, name, password, role)
        row, token = create_token(session, user)
        session.commit()
        return name, row.id, token


def test_the_api_needs_a_token_or_a_session(app):
    anonymous = app.test_client()
    response = anonymous.get("/api/builds")
    assert response.status_code == 401
    assert "Bearer" in response.json["error"]
    assert signed_in(app.test_client(), "bh_not-a-real-token").get("/api/builds").status_code == 401


def test_health_and_hooks_stay_open(app):
    anonymous = app.test_client()
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.post("/hooks/github", data=b"{").status_code == 400  # reached the hook, not the sign-in


def test_a_viewer_reads_but_cannot_change(app):
    _name, _id, token = make_user(app, "viewer")
    viewer = signed_in(app.test_client(), token)
    assert viewer.get("/api/builds").status_code == 200
    assert viewer.get("/api/triggers").status_code == 200
    refused = viewer.post("/api/triggers", json=TRIGGER)
    assert refused.status_code == 403 and "admin" in refused.json["error"]


def test_an_admin_can_change(app):
    _name, _id, token = make_user(app, "admin")
    assert signed_in(app.test_client(), token).post("/api/triggers", json=TRIGGER).status_code == 201


def test_a_revoked_token_stops_working(app):
    _name, token_id, token = make_user(app, "admin")
    client = signed_in(app.test_client(), token)
    assert client.get("/api/builds").status_code == 200
    with app.extensions["buildhook"].sessions() as session:
        revoke_token(session, token_id)
        session.commit()
    assert client.get("/api/builds").status_code == 401


def test_tokens_and_passwords_are_stored_hashed(app):
    name, _id, token = make_user(app, "admin", password="a-very-secret-password")
    with app.extensions["buildhook"].engine.connect() as conn:
        dump = repr(conn.execute(text("SELECT * FROM users")).fetchall()) + \
            repr(conn.execute(text("SELECT * FROM api_tokens")).fetchall())
    assert name in dump
    assert token not in dump and token[10:] not in dump
    assert "a-very-secret-password" not in dump


def csrf_from(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_people_sign_in_with_a_session_and_forms_need_the_csrf_token(app):
    name, _id, _token = make_user(app, "admin", password="browser-password")
    browser = app.test_client()
    assert browser.get("/").status_code == 302
    login = browser.get("/login")
    wrong = browser.post("/login", data={"name": name, "password": "nope", "csrf_token": csrf_from(login.text)})
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
    forged = browser.post("/login", data={"name": name, "password": "browser-password", "csrf_token": "x"})
    assert forged.status_code == 401 and "expired" in forged.text
    token = csrf_from(browser.get("/login").text)
    ok = browser.post("/login?next=/api/builds", data={"name": name, "password": "browser-password",
                                                        "csrf_token": token})
    assert ok.status_code == 302 and ok.headers["Location"].endswith("/api/builds")
    assert browser.get("/").status_code == 200
    assert browser.get("/api/builds").status_code == 200
    no_csrf = browser.post("/api/triggers", json=TRIGGER)
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json["error"]
    page_token = csrf_from(browser.get("/").text)
    with_csrf = browser.post("/api/triggers", json=TRIGGER, headers={"X-CSRF-Token": page_token})
    assert with_csrf.status_code == 201
    assert browser.post("/logout", data={"csrf_token": page_token}).status_code == 302
    assert browser.get("/").status_code == 302


def test_an_offsite_next_after_sign_in_is_ignored(app):
    name, _id, _token = make_user(app, "viewer", password="browser-password")
    browser = app.test_client()
    token = csrf_from(browser.get("/login").text)
    response = browser.post("/login?next=//evil.example.com/", data={"name": name, "password": "browser-password",
                                                                     "csrf_token": token})
    assert response.headers["Location"] == "/"


def test_users_and_tokens_from_the_command_line(service_env, app):
    env = {**os.environ, **service_env}
    name = f"cli-{uuid.uuid4().hex[:6]}"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([BUILDHOOK, *args], env=env, capture_output=True, text=True, timeout=60)

    assert run("users", "add", name, "--role", "viewer", "--password", "short").returncode == 2
    added = run("users", "add", name, "--role", "viewer", "--password", "long-enough-password")
    assert added.returncode == 0, added.stderr
    assert run("users", "add", name, "--role", "viewer", "--password", "long-enough-password").returncode == 2
    made = run("tokens", "create", "--user", name)
    token = made.stdout.strip()
    assert token.startswith("bh_") and "shown once" in made.stderr
    client = signed_in(app.test_client(), token)
    assert client.get("/api/builds").status_code == 200
    token_id = re.search(r"# token (\d+)", made.stderr).group(1)
    listed = run("tokens", "list")
    assert token[:10] in listed.stdout and token not in listed.stdout
    assert run("tokens", "revoke", token_id).returncode == 0
    assert client.get("/api/builds").status_code == 401


@pytest.mark.parametrize("path", ["/", "/builds/1"])
def test_pages_redirect_to_sign_in(app, path):
    response = app.test_client().get(path)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def sign_in(app, name: str, password: str):
    browser = app.test_client()
    token = csrf_from(browser.get("/login").text)
    assert browser.post("/login", data={"name": name, "password": password, "csrf_token": token}).status_code == 302
    assert browser.get("/api/builds").status_code == 200
    return browser


def test_a_deleted_users_session_does_not_sign_in_whoever_gets_their_id(app, client):
    """SQLite reuses the highest id after a delete: the old cookie must not become the new user's."""
    name, _id, _token = make_user(app, "viewer", password="old-password")
    browser = sign_in(app, name, "old-password")
    with app.extensions["buildhook"].sessions() as session:
        user_id = session.scalar(text("SELECT id FROM users WHERE name = :name"), {"name": name})
    assert client.delete(f"/api/users/{name}").status_code == 204
    assert browser.get("/api/builds").status_code == 401

    with app.extensions["buildhook"].sessions() as session:
        session.add(User(id=user_id, name=f"admin-{uuid.uuid4().hex[:6]}",
                         password_hash=generate_password_hash("x"), role="admin"))
        session.commit()
    assert browser.get("/api/builds").status_code == 401
    assert browser.post("/api/triggers", json=TRIGGER).status_code in (401, 403)


def test_changing_a_password_ends_the_users_sessions(app, client):
    name, _id, _token = make_user(app, "viewer", password="first-password")
    browser = sign_in(app, name, "first-password")
    assert client.patch(f"/api/users/{name}", json={"password": "second-password"}).status_code == 200
    assert browser.get("/api/builds").status_code == 401
    sign_in(app, name, "second-password")
