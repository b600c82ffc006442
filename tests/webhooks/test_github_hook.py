"""POST /hooks/github: signatures, pings, ignored events, replays and bad input.

These run against the real database and broker, without a worker: they check
what the endpoint answers and records, and which builds it queues.
"""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select, text

from builder.db.models import Build, Delivery
from tests.payloads import fixture, github_headers, github_push

SECRET = "s3cr3t-webhook-value"


@pytest.fixture
def trigger(client):
    name = f"acme/widget-{uuid.uuid4().hex[:8]}"
    response = client.post("/api/triggers", json={
        "provider": "github", "repository": name, "clone_url": "file:///nonexistent/repo.git",
        "secret": SECRET, "image": f"acme/{name.split('/')[1]}",
    })
    assert response.status_code == 201, response.json
    return response.json


def builds_for(app, trigger_id: int) -> list[Build]:
    with app.extensions["buildhook"].sessions() as session:
        return list(session.scalars(select(Build).where(Build.trigger_id == trigger_id)))


def delivery(app, delivery_id: int) -> Delivery:
    with app.extensions["buildhook"].sessions() as session:
        return session.get(Delivery, delivery_id)


def post(client, payload, secret=SECRET, event="push", delivery_id=None, headers=None):
    body = json.dumps(payload).encode()
    sent = github_headers(body, secret, event, delivery_id)
    sent.update(headers or {})
    return client.post("/hooks/github", data=body, headers=sent)


def push_payload(trigger, ref="refs/heads/main", sha="a" * 40, name="push_branch"):
    return github_push(name, repository=trigger["repository"], ref=ref, sha=sha,
                       clone_url=trigger["clone_url"])


def test_branch_push_queues_one_build_of_the_pushed_commit(app, client, trigger):
    response = post(client, push_payload(trigger, sha="b" * 40))
    assert response.status_code == 202
    assert response.json["outcome"] == "accepted"
    [build] = builds_for(app, trigger["id"])
    assert response.json["builds"] == [build.id]
    assert (build.commit, build.ref, build.state) == ("b" * 40, "refs/heads/main", "queued")
    assert build.tags == ["main", "bbbbbbb", "latest"]
    assert build.image.endswith("/" + trigger["image"])


def test_branch_name_is_sanitised_into_a_docker_tag(app, client, trigger):
    post(client, push_payload(trigger, ref="refs/heads/feature/Login_v2"))
    [build] = builds_for(app, trigger["id"])
    assert build.tags == ["feature-Login_v2", "aaaaaaa"]


def test_tag_push_queues_a_build_tagged_with_the_tag_name(app, client, trigger):
    response = post(client, push_payload(trigger, ref="refs/tags/v1.2.3", sha="c" * 40, name="push_tag"))
    assert response.status_code == 202
    [build] = builds_for(app, trigger["id"])
    assert (build.ref_type, build.ref_name, build.commit, build.tags) == ("tag", "v1.2.3", "c" * 40, ["v1.2.3"])


@pytest.mark.parametrize("name, ref, reason", [
    ("push_branch_deleted", "refs/heads/feature-branch", "branch 'feature-branch' was deleted"),
    ("push_tag_deleted", "refs/tags/simple-tag", "tag 'simple-tag' was deleted"),
])
def test_deletion_push_is_ignored_with_its_reason_recorded(app, client, trigger, name, ref, reason):
    payload = github_push(name, repository=trigger["repository"], ref=ref, sha=None,
                          clone_url=trigger["clone_url"])
    response = post(client, payload)
    assert response.status_code == 202
    assert response.json["outcome"] == "ignored"
    assert response.json["reason"] == reason
    recorded = delivery(app, response.json["delivery"])
    assert (recorded.outcome, recorded.reason, recorded.status_code) == ("ignored", reason, 202)
    assert builds_for(app, trigger["id"]) == []


def test_ping_is_answered_with_200(app, client, trigger):
    payload = fixture("github/ping.json")
    payload["repository"]["full_name"] = trigger["repository"]
    response = post(client, payload, event="ping")
    assert response.status_code == 200
    assert delivery(app, response.json["delivery"]).outcome == "ping"


@pytest.mark.parametrize("name, event, reason", [
    ("create_tag", "create", "event 'create' is recorded but not built"),
    ("pull_request_labeled", "pull_request", "pull request #2 'labeled': recorded, not built"),
    # the default rules build branches and tags: a request needs a pull_request rule
    ("pull_request_opened", "pull_request", "pull request #2 ('changes' into 'master'): no rule of trigger"),
])
def test_other_events_are_recorded_and_not_built(app, client, trigger, name, event, reason):
    payload = fixture(f"github/{name}.json")
    payload["repository"]["full_name"] = trigger["repository"]
    response = post(client, payload, event=event)
    assert response.status_code == 202
    assert response.json["outcome"] == "ignored"
    assert reason in response.json["reason"]
    assert builds_for(app, trigger["id"]) == []


def test_unknown_repository_gets_202_no_trigger_and_never_a_build(app, client):
    payload = github_push("push_branch", repository="nobody/unknown-" + uuid.uuid4().hex,
                          ref="refs/heads/main", sha="d" * 40, clone_url="file:///x")
    response = post(client, payload)
    assert response.status_code == 202
    assert response.json["outcome"] == "no_trigger"
    assert response.json["builds"] == []
    assert delivery(app, response.json["delivery"]).outcome == "no_trigger"


@pytest.mark.parametrize("headers", [
    {"X-Hub-Signature-256": "sha256=" + "0" * 64},
    {"X-Hub-Signature-256": ""},
    {"X-Hub-Signature-256": "sha1=cf93f9ba3c8d3a789e61f91e1e5c6a360d036e98"},
    {"X-Hub-Signature-256": "sha256=é"},
])
def test_bad_signature_gets_401_and_no_build(app, client, trigger, headers):
    response = post(client, push_payload(trigger), headers=headers)
    assert response.status_code == 401
    recorded = delivery(app, response.json["delivery"])
    assert (recorded.outcome, recorded.status_code) == ("rejected", 401)
    assert builds_for(app, trigger["id"]) == []


def test_signature_made_with_another_secret_gets_401(app, client, trigger):
    response = post(client, push_payload(trigger), secret="not-the-secret")
    assert response.status_code == 401
    assert builds_for(app, trigger["id"]) == []


def test_replayed_delivery_id_starts_no_second_build(app, client, trigger):
    delivery_id = str(uuid.uuid4())
    first = post(client, push_payload(trigger), delivery_id=delivery_id)
    again = post(client, push_payload(trigger), delivery_id=delivery_id)
    assert first.status_code == 202 and first.json["outcome"] == "accepted"
    assert again.status_code == 202 and again.json["outcome"] == "duplicate"
    assert again.json["builds"] == []
    assert len(builds_for(app, trigger["id"])) == 1


def test_forged_request_cannot_burn_a_delivery_id(app, client, trigger):
    delivery_id = str(uuid.uuid4())
    forged = post(client, push_payload(trigger), secret="attacker", delivery_id=delivery_id)
    real = post(client, push_payload(trigger), delivery_id=delivery_id)
    assert forged.status_code == 401
    assert real.json["outcome"] == "accepted"


def test_invalid_json_gets_400_and_is_recorded(app, client):
    response = client.post("/hooks/github", data=b"{not json", headers={"X-GitHub-Event": "push"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json["error"]
    assert delivery(app, response.json["delivery"]).status_code == 400


def test_body_over_the_limit_gets_413(app, client, settings):
    body = b'{"a": "' + b"x" * settings.max_body_bytes + b'"}'
    response = client.post("/hooks/github", data=body, headers={"X-GitHub-Event": "push"})
    assert response.status_code == 413
    assert delivery(app, response.json["delivery"]).outcome == "rejected"


def test_unknown_provider_gets_404(client):
    assert client.post("/hooks/nosuchhost", data=b"{}").status_code == 404


def test_webhook_secret_is_stored_encrypted_and_never_returned(app, client, trigger):
    assert SECRET not in json.dumps(trigger)
    assert SECRET not in client.get("/api/triggers").get_data(as_text=True)
    with app.extensions["buildhook"].engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM triggers")).fetchall()
    assert rows and SECRET not in repr(rows)
