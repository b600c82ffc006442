"""Users and API tokens through the API (admins only; a viewer sees their own tokens), revocation,
and that reading the API with a token does not write the database on every request."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import event

from builder.db.models import ApiToken
from tests.conftest import signed_in

PASSWORD = "a-long-enough-password"


def add(client, role: str = "viewer") -> str:
    name = f"api-{role}-{uuid.uuid4().hex[:8]}"
    created = client.post("/api/users", json={"name": name, "role": role, "password": PASSWORD})
    assert created.status_code == 201, created.json
    return name


def token_for(client, name: str) -> dict:
    created = client.post("/api/tokens", json={"user": name})
    assert created.status_code == 201, created.json
    return created.json


@pytest.fixture
def viewer(app, client):
    name = add(client)
    made = token_for(client, name)
    return name, made, signed_in(app.test_client(), made["token"])


def test_an_admin_adds_lists_and_deletes_users(app, client):
    name = add(client, "viewer")
    created_admin = add(client, "admin")
    listed = client.get("/api/users").json["users"]
    by_name = {user["name"]: user for user in listed}
    assert by_name[name]["role"] == "viewer" and by_name[created_admin]["role"] == "admin"
    assert set(by_name[name]) == {"id", "name", "role", "created_at"}
    assert PASSWORD not in client.get("/api/users").get_data(as_text=True)
    # the new user can sign in with the password they were given
    browser = app.test_client()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").text).group(1)
    assert browser.post("/login", data={"name": name, "password": PASSWORD, "csrf_token": csrf}).status_code == 302
    assert browser.get("/api/builds").status_code == 200
    # deleting ends their session and their tokens
    token = token_for(client, name)["token"]
    assert client.delete(f"/api/users/{name}").status_code == 204
    assert name not in [user["name"] for user in client.get("/api/users").json["users"]]
    assert browser.get("/api/builds").status_code == 401
    assert signed_in(app.test_client(), token).get("/api/builds").status_code == 401
    assert client.delete(f"/api/users/{name}").status_code == 404


@pytest.mark.parametrize("user, words", [
    ({"name": "bad name!", "role": "viewer", "password": PASSWORD}, "user names"),
    ({"name": "someone", "role": "root", "password": PASSWORD}, "role"),
    ({"name": "someone", "role": "viewer", "password": "short"}, "10 characters"),
    ({"name": "someone", "role": "viewer"}, "password"),
    ({"name": "someone", "role": "viewer", "password": PASSWORD, "admin": True}, "unknown fields"),
])
def test_bad_users_are_a_400(client, user, words):
    refused = client.post("/api/users", json=user)
    assert refused.status_code == 400 and words in refused.json["error"], refused.json


def test_a_taken_name_yourself_and_the_last_admin_are_refused(client):
    name = add(client)
    taken = client.post("/api/users", json={"name": name, "role": "admin", "password": PASSWORD})
    assert taken.status_code == 409 and "exists" in taken.json["error"]
    yourself = client.delete("/api/users/test-admin")  # the fixtures' admin token is test-admin's
    assert yourself.status_code == 409 and "yourself" in yourself.json["error"]


def test_viewers_cannot_manage_users_or_tokens(client, viewer):
    _name, made, as_viewer = viewer
    for response in (as_viewer.get("/api/users"),
                     as_viewer.post("/api/users", json={"name": "x-viewer", "role": "admin", "password": PASSWORD}),
                     as_viewer.delete("/api/users/test-admin"),
                     as_viewer.post("/api/tokens", json={}),
                     as_viewer.delete(f"/api/tokens/{made['id']}")):
        assert response.status_code == 403 and "admin" in response.json["error"], response.request.path
    assert "test-admin" in [user["name"] for user in client.get("/api/users").json["users"]]


def test_tokens_are_shown_once_and_listed_without_their_value(app, client, viewer):
    name, made, as_viewer = viewer
    assert made["token"].startswith("bh_") and made["user"] == name and made["active"] is True
    assert made["prefix"] == made["token"][:10] and made["last_used_at"] is None
    own = as_viewer.get("/api/tokens")
    assert own.status_code == 200
    assert [row["user"] for row in own.json["tokens"]] == [name]  # a viewer sees only their own
    everyone = client.get("/api/tokens")
    assert {name, "test-admin"} <= {row["user"] for row in everyone.json["tokens"]}
    for answer in (own, everyone):
        text = answer.get_data(as_text=True)
        assert made["token"] not in text and made["token"][10:] not in text
        assert all("token" not in row and "token_hash" not in row for row in answer.json["tokens"])
    mine = client.post("/api/tokens", json={}).json  # no user: the admin's own
    assert mine["user"] == "test-admin"
    assert client.post("/api/tokens", json={"user": "nobody-at-all"}).status_code == 404
    assert client.post("/api/tokens", json={"owner": name}).status_code == 400


def test_a_revoked_token_gets_401(app, client, viewer):
    _name, made, as_viewer = viewer
    assert as_viewer.get("/api/builds").status_code == 200
    assert client.delete(f"/api/tokens/{made['id']}").status_code == 204
    refused = as_viewer.get("/api/builds")
    assert refused.status_code == 401
    [row] = [row for row in client.get("/api/tokens").json["tokens"] if row["id"] == made["id"]]
    assert row["active"] is False and row["revoked_at"] is not None
    assert client.delete("/api/tokens/987654321").status_code == 404


def test_reading_with_a_token_writes_last_used_at_at_most_once_a_minute(app, client, viewer):
    _name, made, as_viewer = viewer
    engine = app.extensions["buildhook"].engine
    sessions = app.extensions["buildhook"].sessions
    commits: list[int] = []

    def count(_connection) -> None:
        commits.append(1)

    def last_used():
        with sessions() as session:
            return session.get(ApiToken, made["id"]).last_used_at

    event.listen(engine, "commit", count)
    try:
        assert as_viewer.get("/api/builds").status_code == 200
        first = last_used()
        assert first is not None and len(commits) == 1  # the first use is recorded
        for _ in range(5):
            assert as_viewer.get("/api/triggers").status_code == 200
        assert len(commits) == 1 and last_used() == first  # reads within the minute write nothing
        with sessions() as session:  # a minute and more later
            session.get(ApiToken, made["id"]).last_used_at = first - timedelta(seconds=61)
            session.commit()
        commits.clear()
        assert as_viewer.get("/api/builds").status_code == 200
        assert len(commits) == 1 and last_used() > first - timedelta(seconds=61)
    finally:
        event.remove(engine, "commit", count)
    listed = [row for row in client.get("/api/tokens").json["tokens"] if row["id"] == made["id"]]
    assert listed[0]["last_used_at"] is not None
