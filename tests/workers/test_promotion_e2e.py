"""push -> tag -> staging -> promote -> approve -> production -> rollback, on real components.

A real worker, a registry notifying the running ``buildhook web``, and a deploy receiver
standing in for staging's and production's deploy systems: production's rule is
``auto: false`` (promotions and rollbacks only) and production requires approval.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.conftest import busybox_dockerfile, finished_build, wait_for
from tests.payloads import github_headers, github_push

SECRET = "promotion-e2e-secret"


@pytest.fixture
def pipeline_to_production(client, make_repo, notifying_registry, worker, receiver):
    name = f"acme/promoted-{uuid.uuid4().hex[:8]}"
    repo = make_repo()
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": name, "clone_url": repo.url, "secret": SECRET,
        "image": f"{notifying_registry.host}/{name}", "rules": [{"source": "branch", "tags": ["{branch}"]}]}).json
    for environment, auto in (("staging", True), (f"production-{name[-8:]}", False)):
        rule = client.post("/api/deploy-rules", json={
            "repository": name, "tag": "main", "environment": environment, "registry": notifying_registry.host,
            "auto": auto, "targets": [{"kind": "webhook", "url": f"{receiver.url}/{environment.split('-')[0]}"}]})
        assert rule.status_code == 201 and rule.json["auto"] is auto, rule.json
    return repo, trigger, name, f"production-{name[-8:]}"


def build_and_stage(client, repo, trigger, name, receiver, staged: int):
    sha = repo.commit({"Dockerfile": busybox_dockerfile(uuid.uuid4().hex)}, "ship it")
    payload = github_push("push_branch", repository=trigger["repository"], ref="refs/heads/main", sha=sha,
                          clone_url=repo.url)
    body = json.dumps(payload).encode()
    build = finished_build(client, client.post("/hooks/github", data=body,
                                               headers=github_headers(body, SECRET)).json["builds"][0])
    assert build["state"] == "succeeded", build["error"]
    wait_for(lambda: len(receiver.posts("/staging")) == staged, 60, "the staging deploy")
    return build, wait_for(lambda: [d for d in client.get(f"/api/deployments?build={build['id']}").json["deployments"]
                                    if d["environment"] == "staging" and d["state"] == "succeeded"], 30,
                           "staging's deployment to succeed")[0]


def deployed_digests(receiver, path):
    return [json.loads(post.body)["data"]["digest"] for post in receiver.posts(path)]


def approve(client, deployments, receiver, production_posts: int):
    assert [d["state"] for d in deployments] == ["awaiting_approval"]
    time.sleep(0.5)
    assert len(receiver.posts("/production")) == production_posts - 1, "nothing deploys before the approval"
    answer = client.post(f"/api/deployments/{deployments[0]['id']}/approve")
    assert answer.status_code == 200 and answer.json["decided_by"] == "test-admin", answer.json
    wait_for(lambda: len(receiver.posts("/production")) == production_posts, 60, "production's deploy")


def running(client, environment, name):
    [env] = [e for e in client.get("/api/environments").json["environments"] if e["name"] == environment]
    return next(r for r in env["running"] if r["repository"] == name)


def test_staging_is_promoted_by_digest_with_approval_and_production_rolls_back(client, pipeline_to_production,
                                                                            receiver):
    repo, trigger, name, production = pipeline_to_production
    subscribed = client.post("/api/subscriptions", json={"url": f"{receiver.url}/events",
                                                         "events": ["deployment.awaiting_approval"]})
    assert subscribed.status_code == 201, subscribed.json
    assert client.put(f"/api/environments/{production}", json={"requires_approval": True}).json[
        "requires_approval"] is True
    first, staged = build_and_stage(client, repo, trigger, name, receiver, 1)
    assert receiver.posts("/production") == [], "an auto: false rule never fires on registry events"

    promoted = client.post(f"/api/deployments/{staged['id']}/promote", json={"environment": production})
    assert promoted.status_code == 202, promoted.json
    [waiting] = promoted.json["deployments"]
    assert (waiting["cause"], waiting["source_deployment"], waiting["digest"]) == ("promotion", staged["id"],
                                                                                   first["digest"])
    asked = wait_for(lambda: receiver.posts("/events") or None, 30, "deployment.awaiting_approval")
    assert asked[0].headers["X-Buildhook-Event"] == "deployment.awaiting_approval"
    approve(client, promoted.json["deployments"], receiver, 1)
    second, staged_again = build_and_stage(client, repo, trigger, name, receiver, 2)
    assert second["digest"] != first["digest"]
    approve(client, client.post(f"/api/deployments/{staged_again['id']}/promote",
                                json={"environment": production}).json["deployments"], receiver, 2)
    assert deployed_digests(receiver, "/production") == [first["digest"], second["digest"]], "exactly those digests"
    now = wait_for(lambda: (r := running(client, production, name))["digest"] == second["digest"] and r, 30,
                   "production to run the second image")
    assert (now["build"], now["commit"], now["deployed_by"], now["approved_by"]) == (
        second["id"], second["commit"], "test-admin", "test-admin")

    refused = client.post(f"/api/environments/{production}/rollback", json={"repository": name})
    assert refused.status_code == 202, refused.json
    [rejected] = refused.json["deployments"]
    answer = client.post(f"/api/deployments/{rejected['id']}/reject")
    assert (answer.json["state"], answer.json["decided_by"]) == ("rejected", "test-admin")
    assert client.post(f"/api/deployments/{rejected['id']}/approve").status_code == 409
    back = client.post(f"/api/environments/{production}/rollback", json={"repository": name})
    assert back.json["deployments"][0]["digest"] == first["digest"]
    assert back.json["deployments"][0]["cause"] == "rollback"
    approve(client, back.json["deployments"], receiver, 3)
    assert deployed_digests(receiver, "/production")[-1] == first["digest"]
    wait_for(lambda: running(client, production, name)["digest"] == first["digest"], 30, "the rollback to finish")

    audit = client.get("/api/audit?limit=500").json["audit"]
    mine = [(e["actor"], e["action"]) for e in audit if name in json.dumps(e) or production in json.dumps(e)]
    for action in ("environment.updated", "deployment.promoted", "deployment.approved", "deployment.rejected",
                   "environment.rolled_back"):
        assert ("test-admin", action) in mine, (action, mine)
    page = client.get("/environments").get_data(as_text=True)
    assert production in page and first["digest"][:19] in page


def test_promotion_errors_say_why(client, pipeline_to_production, receiver):
    repo, trigger, name, production = pipeline_to_production
    assert client.post("/api/deployments/987654321/promote", json={"environment": production}).status_code == 404
    assert client.post("/api/environments/nowhere/rollback", json={"repository": name}).status_code == 404
    assert client.put("/api/environments/nowhere", json={"requires_approval": True}).status_code == 404
    nothing = client.post(f"/api/environments/{production}/rollback", json={"repository": name})
    assert nothing.status_code == 409 and "nothing" in nothing.json["error"]
