"""Approval on the environments page (plain forms with the CSRF token) and from the CLI; the audit log
of changes made through the API."""

from __future__ import annotations

import getpass
import re
import uuid

import pytest
from sqlalchemy import update

from builder.db.models import Deployment
from tests.buildhook.test_cli_deploy import run
from tests.openapi_environment_cases import succeeded
from tests.webhooks.test_pages import signed_in_browser


@pytest.fixture
def world(app, client):
    """An image with a staging deployment that succeeded, and a production that requires approval."""
    image = f"acme/approve-{uuid.uuid4().hex[:8]}"
    sessions = app.extensions["buildhook"].sessions
    production = f"production-{image[-8:]}"
    for environment in ("staging", production):
        made = client.post("/api/deploy-rules", json={"repository": image, "tag": "main", "environment": environment,
                                                      "auto": environment == "staging", "targets": [
                                                          {"kind": "webhook", "url": "http://127.0.0.1:1/deploy"}]})
        assert made.status_code == 201, made.json
    assert client.put(f"/api/environments/{production}", json={"requires_approval": True}).status_code == 200
    world = type("World", (), {"image": image, "sessions": sessions, "build_ok": None, "production": production})
    yield world
    with sessions() as session:  # nothing for the session's worker to send to a closed port
        session.execute(update(Deployment).where(Deployment.repository == image, Deployment.state.in_(
            ("pending", "awaiting_approval"))).values(state="failed", error="test: never run"))
        session.commit()


def awaiting(client, world) -> int:
    promoted = client.post(f"/api/deployments/{succeeded(world)}/promote", json={"environment": world.production})
    assert promoted.status_code == 202, promoted.json
    [deployment] = promoted.json["deployments"]
    assert deployment["state"] == "awaiting_approval"
    return deployment["id"]


def state_of(client, deployment_id: int) -> dict:
    return next(d for d in client.get("/api/deployments?limit=500").json["deployments"] if d["id"] == deployment_id)


def test_an_admin_approves_and_rejects_on_the_page_with_the_forms_csrf_token(app, client, world):
    browser, _csrf = signed_in_browser(app)
    first, second = awaiting(client, world), awaiting(client, world)
    page = browser.get("/environments").text
    assert world.production in page and "requires approval" in page
    form = re.search(rf'action="/deployments/{first}/approve"><input type="hidden" name="csrf_token" '
                     r'value="([^"]+)"', page)
    assert form, "an Approve form with the CSRF token"
    assert browser.post(f"/deployments/{first}/approve").status_code == 403, "no CSRF token: refused"
    assert state_of(client, first)["state"] == "awaiting_approval"
    answer = browser.post(f"/deployments/{first}/approve", data={"csrf_token": form.group(1)})
    assert answer.status_code == 302
    approved = state_of(client, first)
    assert approved["state"] in ("pending", "running", "failed") and approved["decided_by"].startswith("admin-")
    assert approved["decided_at"]
    browser.post(f"/deployments/{second}/reject", data={"csrf_token": form.group(1)})
    assert state_of(client, second)["state"] == "rejected"
    viewer, csrf = signed_in_browser(app, "viewer")
    third = awaiting(client, world)
    assert f"/deployments/{third}/approve" not in viewer.get("/environments").text
    assert viewer.post(f"/deployments/{third}/approve", data={"csrf_token": csrf}).status_code == 403


def test_the_cli_approves_and_rejects_and_the_audit_log_names_who(client, world, service_env):
    first, second = awaiting(client, world), awaiting(client, world)
    approved = run(service_env, "deployments", "approve", str(first))
    assert approved.returncode == 0, approved.stderr
    assert f"Deployment {first}:" in approved.stdout
    rejected = run(service_env, "deployments", "reject", str(second), "--json")
    assert rejected.returncode == 0, rejected.stderr
    assert state_of(client, second)["state"] == "rejected"
    assert state_of(client, first)["decided_by"] == f"cli:{getpass.getuser()}"
    again = run(service_env, "deployments", "approve", str(second))
    assert again.returncode == 2 and "rejected, not awaiting approval" in again.stderr
    audit = client.get("/api/audit?limit=500").json["audit"]
    assert {(e["actor"], e["action"], e["subject"]) for e in audit} >= {
        (f"cli:{getpass.getuser()}", "deployment.approved", f"deployment {first}"),
        (f"cli:{getpass.getuser()}", "deployment.rejected", f"deployment {second}"),
        ("test-admin", "environment.updated", world.production)}


def test_changes_to_triggers_users_and_tokens_are_in_the_audit_log_without_secrets(app, client):
    name = f"acme/audited-{uuid.uuid4().hex[:6]}"
    trigger = client.post("/api/triggers", json={"provider": "github", "repository": name, "clone_url":
                                                 "https://example.com/a.git", "secret": "audit-secret",
                                                 "image": "acme/audited"}).json
    client.patch(f"/api/triggers/{trigger['id']}", json={"enabled": False})
    client.delete(f"/api/triggers/{trigger['id']}")
    user = f"audited-{uuid.uuid4().hex[:6]}"
    client.post("/api/users", json={"name": user, "role": "viewer", "password": "a-long-audited-password"})
    token = client.post("/api/tokens", json={"user": user}).json
    client.delete(f"/api/tokens/{token['id']}")
    client.post("/api/users", json={"name": user, "role": "viewer", "password": "a-long-audited-password"})  # 409
    audit = client.get("/api/audit?limit=500").json["audit"]
    mine = [(e["actor"], e["action"], e["subject"]) for e in reversed(audit)
            if e["subject"] in (f"trigger {trigger['id']}", f"user {user}", f"token {token['id']}")]
    assert mine == [("test-admin", "trigger.created", f"trigger {trigger['id']}"),
                    ("test-admin", "trigger.updated", f"trigger {trigger['id']}"),
                    ("test-admin", "trigger.deleted", f"trigger {trigger['id']}"),
                    ("test-admin", "user.created", f"user {user}"),
                    ("test-admin", "token.created", f"token {token['id']}"),
                    ("test-admin", "token.revoked", f"token {token['id']}")]
    text = str(audit)
    assert "audit-secret" not in text and token["token"] not in text and "a-long-audited-password" not in text
    page = client.get("/audit").get_data(as_text=True)
    assert "token.revoked" in page and "trigger.created" in page
