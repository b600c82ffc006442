"""Triggers through the API: edit (PATCH), disable and enable, delete, build timeouts, and that no
secret ever comes back (tokens, keys, secret build args, a clone URL's credentials); the trigger
pages' build timeout field."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from sqlalchemy import text, update

from builder.accounts.users import add_user, create_token
from builder.db.models import Build
from tests.conftest import signed_in
from tests.payloads import github_headers, github_push

SECRET = "api-triggers-first-secret"
SECRETS = {"secret": SECRET, "status_token": "status-token-never-shown", "clone_token": "clone-token-never-shown",
           "ssh_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nkey-never-shown\n-----END OPENSSH PRIVATE KEY-----\n"}


def body(**extra: Any) -> dict:
    name = f"acme/api-triggers-{uuid.uuid4().hex[:8]}"
    return {"provider": "github", "repository": name, "clone_url": f"file:///{name}", "secret": SECRET,
            "image": name, **extra}


def make_trigger(client, **extra: Any) -> dict:
    created = client.post("/api/triggers", json=body(**extra))
    assert created.status_code == 201, created.json
    return created.json


def push(client, trigger: dict, secret: str = SECRET, branch: str = "main"):
    payload = github_push("push_branch", repository=trigger["repository"], ref=f"refs/heads/{branch}",
                          sha=uuid.uuid4().hex + "abcdef01", clone_url=trigger["clone_url"])
    raw = json.dumps(payload).encode()
    return client.post("/hooks/github", data=raw, headers=github_headers(raw, secret))


@pytest.fixture
def viewer(app):
    with app.extensions["buildhook"].sessions() as session:
        user = add_user(session, f"viewer-{uuid.uuid4().hex[:6]}", "viewer-password", "viewer")
        _row, token = create_token(session, user)
        session.commit()
    return signed_in(app.test_client(), token)


@pytest.fixture
def retire(app):
    """Builds the hooks queue here are marked superseded at the end: none is left for the session's worker."""
    triggers: list[int] = []
    yield triggers.append
    with app.extensions["buildhook"].sessions() as session:
        session.execute(update(Build).where(Build.trigger_id.in_(triggers), Build.state == "queued")
                        .values(state="superseded", reason="test_api_triggers: never run"))
        session.commit()


def test_patch_changes_only_the_fields_given_with_create_s_checks(client):
    trigger = make_trigger(client, default_branch="main")
    changed = client.patch(f"/api/triggers/{trigger['id']}", json={
        "image": "acme/renamed", "default_branch": "develop", "supersede": False,
        "rules": [{"source": "tag", "match": "regex", "pattern": r"v(\d+)\.(\d+)", "tags": ["{\\1}.{\\2}", "latest"]}]})
    assert changed.status_code == 200, changed.json
    shown = client.get(f"/api/triggers/{trigger['id']}").json
    assert shown == changed.json
    assert (shown["image"], shown["default_branch"], shown["supersede"]) == ("acme/renamed", "develop", False)
    assert [(r["source"], r["pattern"], r["tags"]) for r in shown["rules"]] == \
        [("tag", r"v(\d+)\.(\d+)", ["{\\1}.{\\2}", "latest"])]
    assert (shown["repository"], shown["clone_url"], shown["enabled"]) == \
        (trigger["repository"], trigger["clone_url"], True)
    # "rules": [] gives Docker Hub's defaults again, with the Dockerfile given
    defaults = client.patch(f"/api/triggers/{trigger['id']}", json={"rules": [], "dockerfile": "build/Dockerfile"})
    assert [(r["source"], r["dockerfile"]) for r in defaults.json["rules"]] == \
        [("branch", "build/Dockerfile"), ("tag", "build/Dockerfile")]


@pytest.mark.parametrize("change, words", [
    ({"rules": [{"source": "tag", "tags": ["{branch}"]}]}, "{branch}"),
    ({"rules": [{"source": "branch", "dockerfile": "../outside/Dockerfile"}]}, "inside the repository"),
    ({"image": "Not A Valid Image"}, "not a valid repository name"),
    ({"default_branch": "a b"}, "not a valid branch name"),
    ({"provider": "svn"}, "unknown provider"),
    ({"repository": "no-owner"}, "OWNER/NAME"),
    ({"secret": ""}, "secret"),
    ({"ssh_key": "key without known hosts"}, "known hosts"),
    ({"enabled": "no"}, "enabled"),
    ({"colour": "blue"}, "unknown fields: colour"),
    ({"dockerfile": "other/Dockerfile"}, "rules"),
])
def test_a_bad_patch_is_a_400_and_changes_nothing(client, change, words):
    trigger = make_trigger(client, rules=[{"source": "branch", "tags": ["{branch}"]}])
    refused = client.patch(f"/api/triggers/{trigger['id']}", json={"image": "acme/should-not-stick", **change})
    assert refused.status_code == 400 and words in refused.json["error"], refused.json
    assert client.get(f"/api/triggers/{trigger['id']}").json == trigger
    assert client.patch(f"/api/triggers/{trigger['id']}", data="not json").status_code == 400


def test_build_timeout_round_trips_and_bad_values_are_400(client):
    trigger = make_trigger(client, build_timeout=600)
    assert trigger["build_timeout"] == 600
    assert client.get(f"/api/triggers/{trigger['id']}").json["build_timeout"] == 600
    assert client.patch(f"/api/triggers/{trigger['id']}", json={"build_timeout": 1200}).json["build_timeout"] == 1200
    assert client.patch(f"/api/triggers/{trigger['id']}", json={"image": "acme/x"}).json["build_timeout"] == 1200
    assert client.patch(f"/api/triggers/{trigger['id']}", json={"build_timeout": None}).json["build_timeout"] is None
    assert make_trigger(client)["build_timeout"] is None  # the default: BUILDHOOK_BUILD_TIMEOUT
    for bad in (0, -5, 1.5, "60", True, 10**9):
        created = client.post("/api/triggers", json=body(build_timeout=bad))
        assert created.status_code == 400 and "build_timeout" in created.json["error"], (bad, created.json)
        patched = client.patch(f"/api/triggers/{trigger['id']}", json={"build_timeout": bad})
        assert patched.status_code == 400 and "build_timeout" in patched.json["error"], (bad, patched.json)
    assert client.get(f"/api/triggers/{trigger['id']}").json["build_timeout"] is None


def test_secrets_are_write_only(client, retire):
    trigger = make_trigger(client, **SECRETS, ssh_known_hosts="example.com ssh-ed25519 AAAA")
    retire(trigger["id"])
    new_secrets = {"secret": "api-triggers-second-secret", "status_token": "new-status-token-never-shown",
                   "clone_token": "new-clone-token-never-shown", "ssh_key": None}
    patched = client.patch(f"/api/triggers/{trigger['id']}", json=new_secrets)
    assert patched.status_code == 200 and patched.json["clone_auth"] == "token" and patched.json["commit_status"]
    answers = [json.dumps(trigger), patched.get_data(as_text=True),
               client.get(f"/api/triggers/{trigger['id']}").get_data(as_text=True),
               client.get("/api/triggers").get_data(as_text=True),
               client.get(f"/api/triggers/{trigger['id']}/deliveries").get_data(as_text=True),
               client.get(f"/triggers/{trigger['id']}").get_data(as_text=True)]
    for secret in [*SECRETS.values(), *filter(None, new_secrets.values()), "key-never-shown"]:
        assert not any(secret in answer for answer in answers), secret
    assert not any(key in json.loads(answers[2]) for key in [*SECRETS, "secret_enc", "clone_token_enc"])
    # the new secret is the one the hook checks
    assert push(client, trigger).status_code == 401
    accepted = push(client, trigger, "api-triggers-second-secret")
    assert accepted.status_code == 202 and accepted.json["outcome"] == "accepted"


def test_a_disabled_trigger_s_webhooks_are_recorded_and_build_nothing(client, retire):
    trigger = make_trigger(client)
    retire(trigger["id"])
    disabled = client.patch(f"/api/triggers/{trigger['id']}", json={"enabled": False})
    assert disabled.status_code == 200 and disabled.json["enabled"] is False
    answer = push(client, trigger)
    assert answer.status_code == 202
    assert (answer.json["outcome"], answer.json["reason"], answer.json["builds"]) == \
        ("ignored", "trigger is disabled", [])
    [recorded] = client.get(f"/api/triggers/{trigger['id']}/deliveries").json["deliveries"]
    assert (recorded["outcome"], recorded["reason"], recorded["status_code"], recorded["builds"]) == \
        ("ignored", "trigger is disabled", 202, [])
    assert client.get(f"/api/builds?trigger={trigger['id']}").json["builds"] == []
    assert client.post(f"/api/triggers/{trigger['id']}/runs", json={"branch": "main"}).status_code == 409
    enabled = client.patch(f"/api/triggers/{trigger['id']}", json={"enabled": True})
    assert enabled.json["enabled"] is True
    again = push(client, trigger)
    assert again.json["outcome"] == "accepted" and len(again.json["builds"]) == 1


def test_delete_removes_the_trigger_and_keeps_its_builds(app, client, retire):
    trigger = make_trigger(client)
    retire(trigger["id"])
    [build_id] = push(client, trigger).json["builds"]
    blocked = client.delete(f"/api/triggers/{trigger['id']}")
    assert blocked.status_code == 409 and f"build {build_id}" in blocked.json["error"]
    with app.extensions["buildhook"].sessions() as session:
        session.get(Build, build_id).state = "failed"
        session.commit()
    deleted = client.delete(f"/api/triggers/{trigger['id']}")
    assert deleted.status_code == 204 and deleted.get_data() == b""
    assert client.get(f"/api/triggers/{trigger['id']}").status_code == 404
    assert trigger["id"] not in [t["id"] for t in client.get("/api/triggers").json["triggers"]]
    assert client.delete(f"/api/triggers/{trigger['id']}").status_code == 404
    assert client.get(f"/api/builds/{build_id}").json["trigger"] is None
    late = push(client, trigger)
    assert late.status_code == 202 and late.json["outcome"] == "no_trigger"
    newer = make_trigger(client)  # the deleted trigger was the newest: its id is not given again
    assert newer["id"] > trigger["id"]
    assert client.get(f"/api/builds/{build_id}").json["trigger"] is None


def test_viewers_cannot_edit_disable_or_delete(client, viewer):
    trigger = make_trigger(client)
    for response in (viewer.patch(f"/api/triggers/{trigger['id']}", json={"enabled": False}),
                     viewer.patch(f"/api/triggers/{trigger['id']}", json={"build_timeout": 60}),
                     viewer.delete(f"/api/triggers/{trigger['id']}")):
        assert response.status_code == 403 and "admin" in response.json["error"]
    assert viewer.get(f"/api/triggers/{trigger['id']}").json == trigger
    assert viewer.get(f"/api/triggers/{trigger['id']}/deliveries").status_code == 200


def browser_with_csrf(app):
    name = f"admin-{uuid.uuid4().hex[:6]}"
    with app.extensions["buildhook"].sessions() as session:
        add_user(session, name, "form-password", "admin")
        session.commit()
    browser = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").text).group(1)
    signed = browser.post("/login", data={"name": name, "password": "form-password", "csrf_token": token})
    assert signed.status_code == 302
    return browser, re.search(r'<meta name="csrf-token" content="([^"]+)"', browser.get("/").text).group(1)


def test_the_trigger_pages_set_and_show_the_build_timeout(app, client):
    browser, csrf = browser_with_csrf(app)
    assert 'name="build_timeout"' in browser.get("/triggers/new").text
    form = {key: value for key, value in body().items() if key != "secret"}
    created = browser.post("/triggers", data={**form, "build_timeout": "900", "csrf_token": csrf},
                           follow_redirects=True)  # post/redirect/get
    assert created.status_code == 200
    trigger_id = int(re.search(r'href="/triggers/(\d+)">Done', created.text).group(1))
    assert client.get(f"/api/triggers/{trigger_id}").json["build_timeout"] == 900
    page = browser.get(f"/triggers/{trigger_id}").text
    assert '<dd id="build-timeout">900 s</dd>' in page and 'name="build_timeout" type="number" min="1" step="1"' in page
    edit = {"image": form["image"], "default_branch": "main", "enabled": "on", "csrf_token": csrf}
    assert browser.post(f"/triggers/{trigger_id}", data={**edit, "build_timeout": ""}).status_code == 303
    assert client.get(f"/api/triggers/{trigger_id}").json["build_timeout"] is None
    assert "default (3600 s)" in browser.get(f"/triggers/{trigger_id}").text
    for bad in ("0", "-3", "1.5", "soon"):
        refused = browser.post(f"/triggers/{trigger_id}", data={**edit, "build_timeout": bad})
        assert refused.status_code == 400 and "build" in refused.text and "timeout" in refused.text, bad
        new = browser.post("/triggers", data={**form, "repository": form["repository"] + "-" + bad.strip("-."),
                                              "build_timeout": bad, "csrf_token": csrf})
        assert new.status_code == 400, bad



def test_the_new_trigger_form_sets_the_limit_and_the_schedule(app, client):
    browser, csrf = browser_with_csrf(app)
    blank = browser.get("/triggers/new").text
    assert 'name="max_concurrent"' in blank and 'name="schedule"' in blank
    form = {key: value for key, value in body().items() if key != "secret"}
    created = browser.post("/triggers", data={**form, "max_concurrent": "2", "schedule": "0 3 * * 1",
                                              "csrf_token": csrf}, follow_redirects=True)
    assert created.status_code == 200
    trigger_id = int(re.search(r'href="/triggers/(\d+)">Done', created.text).group(1))
    shown = client.get(f"/api/triggers/{trigger_id}").json
    assert (shown["max_concurrent"], shown["schedule"]) == (2, "0 3 * * 1") and shown["schedule_next_at"]
    page = browser.get(f"/triggers/{trigger_id}").text
    assert "at most 2" in page and "<code>0 3 * * 1</code> (UTC)" in page
    limit = "max_concurrent must be a whole number from 1 to 1000 (empty: no limit)"  # a form cannot send null
    for field, bad, words in (("max_concurrent", "0", limit), ("max_concurrent", "two", limit),
                              ("max_concurrent", "1001", limit), ("schedule", "every monday", "schedule")):
        refused = browser.post("/triggers", data={**form, "repository": form["repository"] + "-bad", field: bad,
                                                  "csrf_token": csrf})
        assert refused.status_code == 400 and words in refused.text, (field, bad)
        assert f'value="{bad}"' in refused.text  # what was typed is kept for correcting


# --- secret build args: write-only, shown by name -------------------------------------------

NPM_TOKEN = "npm-secret-value-7c1e9b2d"


def raw_secret_columns(app, trigger_id: int) -> list[str | None]:
    with app.extensions["buildhook"].sessions() as session:
        return list(session.execute(text(
            "SELECT secret_build_args_enc FROM trigger_rules WHERE trigger_id = :id ORDER BY position"),
            {"id": trigger_id}).scalars())


def test_secret_build_args_are_write_only_and_shown_by_name(app, client, viewer, retire):
    trigger = make_trigger(client, rules=[
        {"source": "branch", "build_args": {"CHANNEL": "stable"},
         "secret_build_args": {"NPM_TOKEN": NPM_TOKEN, "PIP_TOKEN": "pip-secret-value-41aa"}},
        {"source": "tag"}])
    retire(trigger["id"])
    assert [r["secret_build_args"] for r in trigger["rules"]] == [["NPM_TOKEN", "PIP_TOKEN"], []]
    assert trigger["rules"][0]["build_args"] == {"CHANNEL": "stable"}
    stored = raw_secret_columns(app, trigger["id"])
    assert stored[1] is None and NPM_TOKEN not in stored[0] and "pip-secret-value" not in stored[0]
    assert sorted(json.loads(stored[0])) == ["NPM_TOKEN", "PIP_TOKEN"]
    # a push: the build's row has the plain build args only
    [build_id] = push(client, trigger).json["builds"]
    with app.extensions["buildhook"].sessions() as session:
        row = session.execute(text("SELECT * FROM builds WHERE id = :id"), {"id": build_id}).one()
    assert NPM_TOKEN not in repr(tuple(row)) and "NPM_TOKEN" not in repr(tuple(row))

    replaced = client.patch(f"/api/triggers/{trigger['id']}", json={"rules": [
        {"source": "branch", "build_args": {"CHANNEL": "stable"}, "secret_build_args": {"NPM_TOKEN": "npm-new-value-9f"}},
        {"source": "tag", "secret_build_args": {"GEM_TOKEN": "gem-secret-value-5e"}}]})
    assert replaced.status_code == 200, replaced.json
    assert [r["secret_build_args"] for r in replaced.json["rules"]] == [["NPM_TOKEN"], ["GEM_TOKEN"]]
    # what GET shows, sent back: kept; absent: kept; null: removed
    shown = client.get(f"/api/triggers/{trigger['id']}").json
    assert client.patch(f"/api/triggers/{trigger['id']}", json={"rules": shown["rules"]}).json == shown
    kept_and_removed = client.patch(f"/api/triggers/{trigger['id']}", json={"rules": [
        {"source": "branch", "build_args": {"CHANNEL": "stable"}}, {"source": "tag", "secret_build_args": None}]})
    assert [r["secret_build_args"] for r in kept_and_removed.json["rules"]] == [["NPM_TOKEN"], []]
    assert client.patch(f"/api/triggers/{trigger['id']}", json={"image": "acme/other"}).json["rules"] == \
        kept_and_removed.json["rules"]
    assert raw_secret_columns(app, trigger["id"])[1] is None

    answers = [json.dumps(trigger), replaced.get_data(as_text=True), kept_and_removed.get_data(as_text=True),
               client.get(f"/api/triggers/{trigger['id']}").get_data(as_text=True),
               client.get("/api/triggers").get_data(as_text=True),
               viewer.get(f"/api/triggers/{trigger['id']}").get_data(as_text=True),
               client.get(f"/api/builds/{build_id}").get_data(as_text=True),
               client.get(f"/triggers/{trigger['id']}").get_data(as_text=True),
               client.get("/triggers").get_data(as_text=True)]
    for value in (NPM_TOKEN, "pip-secret-value", "npm-new-value-9f", "gem-secret-value-5e"):
        assert not any(value in answer for answer in answers), value
    assert "secret build args NPM_TOKEN" in answers[-2]  # the trigger page names them


@pytest.mark.parametrize("given, words", [
    ({"1TOKEN": "x"}, "not a valid build arg name"),
    ({"NPM TOKEN": "x"}, "not a valid build arg name"),
    ({"NPM_TOKEN": ""}, "needs a value"),
    ({"NPM_TOKEN": "a\u0000b"}, "NUL"),
    ({"NPM_TOKEN": "two\nlines"}, "one line"),
    ({"NPM_TOKEN": 42}, "secret_build_args"),
    ("NPM_TOKEN=x", "secret_build_args"),
    ({"CHANNEL": "x"}, "both a build arg and a secret build arg"),
    (["NPM_TOKEN"], "has no value yet"),
])
def test_bad_secret_build_args_are_a_400(app, client, given, words):
    rule = {"source": "branch", "build_args": {"CHANNEL": "stable"}, "secret_build_args": given}
    created = client.post("/api/triggers", json=body(rules=[rule]))
    assert created.status_code == 400 and words in created.json["error"], created.json
    trigger = make_trigger(client, rules=[{"source": "branch", "build_args": {"CHANNEL": "stable"}}])
    refused = client.patch(f"/api/triggers/{trigger['id']}", json={"rules": [rule]})
    assert refused.status_code == 400 and words in refused.json["error"], refused.json
    assert client.get(f"/api/triggers/{trigger['id']}").json == trigger
    assert raw_secret_columns(app, trigger["id"]) == [None]


def test_the_create_form_takes_secret_build_args_and_never_shows_them_again(app, client):
    browser, csrf = browser_with_csrf(app)
    form = {key: value for key, value in body().items() if key != "secret"}
    rules = json.dumps([{"source": "branch", "secret_build_args": {"NPM_TOKEN": NPM_TOKEN}}])
    created = browser.post("/triggers", data={**form, "rules": rules, "csrf_token": csrf}, follow_redirects=True)
    assert created.status_code == 200 and NPM_TOKEN not in created.text
    assert "secret build args NPM_TOKEN" in created.text
    trigger_id = int(re.search(r'href="/triggers/(\d+)">Done', created.text).group(1))
    assert client.get(f"/api/triggers/{trigger_id}").json["rules"][0]["secret_build_args"] == ["NPM_TOKEN"]
    # refused (a bad tag template): the form comes back without the value
    bad = json.dumps([{"source": "tag", "tags": ["{branch}"], "secret_build_args": {"NPM_TOKEN": NPM_TOKEN}}])
    refused = browser.post("/triggers", data={**form, "repository": form["repository"] + "-x", "rules": bad,
                                              "csrf_token": csrf})
    assert refused.status_code == 400 and NPM_TOKEN not in refused.text
    assert "NPM_TOKEN" in refused.text and "not shown again" in refused.text


# --- clone URLs with credentials ----------------------------------------------------------------


def test_a_clone_url_s_user_and_password_are_never_shown(app, client, viewer):
    url_token = "clone-url-token-0d5c8e"
    trigger = make_trigger(client, clone_url=f"https://ci-bot:{url_token}@git.example.com:8443/acme/widget.git")
    assert trigger["clone_url"] == "https://git.example.com:8443/acme/widget.git"
    token_only = make_trigger(client, clone_url=f"https://{url_token}@github.com/acme/widget.git")
    assert token_only["clone_url"] == "https://github.com/acme/widget.git"
    answers = [client.get(f"/api/triggers/{trigger['id']}").get_data(as_text=True),
               viewer.get("/api/triggers").get_data(as_text=True),
               client.get(f"/triggers/{trigger['id']}").get_data(as_text=True),
               client.get(f"/triggers/{token_only['id']}").get_data(as_text=True),
               client.get("/triggers").get_data(as_text=True),
               client.patch(f"/api/triggers/{trigger['id']}", json={"image": "acme/other"}).get_data(as_text=True)]
    assert not any(url_token in answer or "ci-bot" in answer for answer in answers)
    assert "https://git.example.com:8443/acme/widget.git" in answers[2]
    # stored as given: the worker still clones with it
    with app.extensions["buildhook"].sessions() as session:
        stored = session.execute(text("SELECT clone_url FROM triggers WHERE id = :id"), {"id": trigger["id"]}).scalar()
    assert stored == f"https://ci-bot:{url_token}@git.example.com:8443/acme/widget.git"
    # URLs without credentials are shown as they are
    for url in ("file:///srv/git/widget.git", "git@github.com:acme/widget.git", "https://github.com/acme/w.git"):
        assert make_trigger(client, clone_url=url)["clone_url"] == url
