"""Clone URLs through the API: refused at creation and edit (400), and never handed to git later.

A trigger stored before clone URLs were checked (written here straight to the database) may
hold one git must never see: its manual runs and rebuilds are refused with 400, its pushes are
recorded and ignored with the reason, and nothing waits on git.
"""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import update

from builder.db.models import Build, Trigger
from tests.conftest import signed_in
from tests.payloads import github_headers, github_push
from webhooks import create_app

SECRET = "clone-url-secret"


def new_trigger(client, clone_url: str, **extra):
    name = f"acme/clone-{uuid.uuid4().hex[:8]}"
    return client.post("/api/triggers", json={"provider": "github", "repository": name, "clone_url": clone_url,
                                              "secret": SECRET, "image": name, **extra})


@pytest.mark.parametrize("url, message", [
    ("ext::sh -c touch% /tmp/pwned", "ext:: transport, which is not allowed"),
    ("fd::0", "fd:: transport, which is not allowed"),
    ("ssh://-oProxyCommand=x/acme/widget.git", "starting with '-'"),
])
def test_creating_or_editing_a_trigger_with_an_unsafe_clone_url_is_a_400(client, url, message):
    created = new_trigger(client, url)
    assert created.status_code == 400 and message in created.json["error"], created.json
    good = new_trigger(client, "git@github.com:acme/widget.git")
    assert good.status_code == 201, good.json
    edited = client.patch(f"/api/triggers/{good.json['id']}", json={"clone_url": url})
    assert edited.status_code == 400 and message in edited.json["error"], edited.json
    assert client.get(f"/api/triggers/{good.json['id']}").json["clone_url"] == "git@github.com:acme/widget.git"


def test_file_urls_need_buildhook_allow_file_clones(settings, admin_token, client):
    strict = signed_in(create_app(settings.with_(allow_file_clones=False)).test_client(), admin_token)
    refused = new_trigger(strict, "file:///srv/git/widget.git")
    assert refused.status_code == 400
    assert "only with BUILDHOOK_ALLOW_FILE_CLONES=1" in refused.json["error"]
    assert new_trigger(strict, "https://github.com/acme/widget.git").status_code == 201
    assert new_trigger(client, "file:///srv/git/widget.git").status_code == 201  # the tests' settings allow it


@pytest.fixture
def legacy_trigger(app, client):
    """A trigger whose clone URL was stored before the check: ``ext::`` (set behind the API's back)."""
    trigger = new_trigger(client, "https://git.example.com/acme/legacy.git").json
    with app.extensions["buildhook"].sessions() as session:
        session.execute(update(Trigger).where(Trigger.id == trigger["id"])
                        .values(clone_url="ext::sh -c touch% /tmp/buildhook-pwned"))
        session.commit()
    return trigger


def test_a_manual_run_of_a_stored_unsafe_url_is_a_400_not_a_500(client, legacy_trigger):
    response = client.post(f"/api/triggers/{legacy_trigger['id']}/runs", json={"branch": "main"})
    assert response.status_code == 400, response.json
    assert "ext:: transport, which is not allowed" in response.json["error"]


def test_a_push_to_a_stored_unsafe_url_is_recorded_and_ignored_with_the_reason(client, legacy_trigger):
    payload = github_push("push_branch", repository=legacy_trigger["repository"], ref="refs/heads/main",
                          sha="c" * 40, clone_url="ext::sh -c touch% /tmp/buildhook-pwned")
    body = json.dumps(payload).encode()
    response = client.post("/hooks/github", data=body, headers=github_headers(body, SECRET))
    assert response.status_code == 202
    assert response.json["outcome"] == "ignored" and not response.json.get("builds"), response.json
    assert "ext:: transport, which is not allowed" in response.json["reason"]
    [delivery] = client.get(f"/api/triggers/{legacy_trigger['id']}/deliveries").json["deliveries"]
    assert delivery["outcome"] == "ignored" and "ext:: transport" in delivery["reason"]
    assert client.get(f"/api/builds?trigger={legacy_trigger['id']}").json["builds"] == []


def test_a_rebuild_of_a_trigger_whose_url_is_now_refused_is_a_400(app, client, legacy_trigger):
    with app.extensions["buildhook"].sessions() as session:
        old = Build(trigger_id=legacy_trigger["id"], provider="github", repository=legacy_trigger["repository"],
                    clone_url="https://git.example.com/acme/legacy.git", ref="refs/heads/main", ref_type="branch",
                    ref_name="main", commit="d" * 40, image="127.0.0.1:5000/acme/legacy", tags=["main"],
                    dockerfile="Dockerfile", context=".", state="failed")
        session.add(old)
        session.commit()
        old_id = old.id
    response = client.post(f"/api/builds/{old_id}/rebuild")
    assert response.status_code == 400 and "ext:: transport" in response.json["error"], response.json
