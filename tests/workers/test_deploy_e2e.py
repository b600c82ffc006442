"""The loop closed: build pushes an image -> the registry notifies buildhook -> deploy rules -> deployments.

A real registry configured with notifications to a running ``buildhook web``, a
real worker, a local deploy receiver, and a real container on the local engine.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

import pytest

from builder.notify.webhooks import verify_signature
from tests.conftest import FIXTURES, busybox_dockerfile, finished_build, wait_for
from tests.payloads import github_headers, github_push

SECRET = "deploy-e2e-secret"
WEBHOOK_SECRET = "whsec-deploy-e2e"
LONG_RUNNING = 'CMD ["/bin/busybox", "sh", "-c", "trap \'exit 0\' TERM; while true; do sleep 1; done"]\n'


def verify_like_the_readme(body: bytes, header: str, secret: str, tolerance: int = 300) -> bool:
    """The README's receiver snippet, kept independent of buildhook's own code."""
    items = [part.strip().partition("=")[::2] for part in header.split(",")]
    t = dict(items).get("t", "")
    if not t.isdecimal() or abs(time.time() - int(t)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected.encode(), v.encode()) for k, v in items if k == "v1")


def push_and_build(client, repo, trigger):
    sha = repo.commit({"Dockerfile": busybox_dockerfile(str(uuid.uuid4()), LONG_RUNNING)}, "deploy me")
    payload = github_push("push_branch", repository=trigger["repository"], ref="refs/heads/main", sha=sha,
                          clone_url=repo.url)
    body = json.dumps(payload).encode()
    response = client.post("/hooks/github", data=body, headers=github_headers(body, SECRET))
    build = finished_build(client, response.json["builds"][0])
    assert build["state"] == "succeeded", build["error"]
    return build


@pytest.fixture
def deploy_project(client, make_repo, notifying_registry, worker):
    name = f"acme/deploy-{uuid.uuid4().hex[:8]}"
    repo = make_repo()
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": name, "clone_url": repo.url, "secret": SECRET,
        "image": f"{notifying_registry.host}/{name}", "rules": [{"source": "branch", "tags": ["{branch}"]}]}).json
    return repo, trigger, name, notifying_registry.host


def add_rule(client, name, registry, **fields):
    """A deploy rule for ``name``:main in ``registry`` (one of BUILDHOOK_TRUSTED_REGISTRIES), staging."""
    response = client.post("/api/deploy-rules", json={"repository": name, "tag": "main", "environment": "staging",
                                                      "registry": registry, **fields})
    assert response.status_code == 201, response.json
    return response.json


def deployments_of(client, build_id):
    return client.get(f"/api/deployments?build={build_id}").json["deployments"]


def test_a_pushed_build_is_deployed_through_a_signed_webhook_exactly_once(client, deploy_project, receiver):
    repo, trigger, name, registry = deploy_project
    add_rule(client, name, registry,
             targets=[{"kind": "webhook", "url": f"{receiver.url}/deploy", "secret": WEBHOOK_SECRET}])
    build = push_and_build(client, repo, trigger)

    [delivered] = wait_for(lambda: receiver.posts("/deploy") or None, 60, "the deploy webhook")
    deployment = wait_for(lambda: [d for d in deployments_of(client, build["id"]) if d["state"] == "succeeded"],
                          30, "the deployment to succeed")[0]
    assert verify_signature(delivered.body, delivered.headers["X-Buildhook-Signature"], WEBHOOK_SECRET)
    assert verify_like_the_readme(delivered.body, delivered.headers["X-Buildhook-Signature"], WEBHOOK_SECRET)
    assert delivered.headers["X-Buildhook-Event"] == "deployment.requested"
    assert delivered.headers["X-Buildhook-Delivery"]
    data = json.loads(delivered.body)["data"]
    assert (data["repository"], data["tag"], data["environment"]) == (name, "main", "staging")
    assert data["digest"] == build["digest"], "the digest resolved from the registry is the one the build pushed"
    assert (data["build"], data["commit"]) == (build["id"], build["commit"])
    assert deployment["digest"] == build["digest"] and deployment["environment"] == "staging"
    page = client.get(f"/builds/{build['id']}").get_data(as_text=True)
    assert "Deployments" in page and "staging" in page and "deployment.requested" in page
    time.sleep(2)  # the registry may notify again (pull events, retries): still one delivery
    assert len(receiver.posts("/deploy")) == 1


def test_a_receiver_that_is_down_for_a_while_gets_the_webhook_when_it_is_back(client, deploy_project, receiver):
    repo, trigger, name, registry = deploy_project
    add_rule(client, name, registry, targets=[{"kind": "webhook", "url": f"{receiver.url}/deploy"}])
    receiver.stop()
    build = push_and_build(client, repo, trigger)

    def failed_attempts():
        deliveries = [d for d in client.get(f"/api/deliveries?build={build['id']}").json["deliveries"]
                      if d["event"] == "deployment.requested"]
        return deliveries if deliveries and deliveries[0]["attempts"] >= 2 else None

    [delivery] = wait_for(failed_attempts, 60, "a few failed delivery attempts")
    assert delivery["state"] == "pending" and delivery["last_status_code"] is None
    receiver.start()
    wait_for(lambda: receiver.posts("/deploy") or None, 60, "the retried webhook")
    shown = wait_for(lambda: (d := client.get(f"/api/deliveries/{delivery['id']}").json)["state"] == "succeeded"
                     and d, 30, "the delivery to be marked succeeded")
    assert [a["status_code"] for a in shown["attempts_log"]][-1] == 200
    assert all(a["status_code"] is None for a in shown["attempts_log"][:-1])
    assert len(receiver.posts("/deploy")) == 1


def test_a_container_on_the_engine_is_recreated_from_the_new_digest(client, deploy_project, docker_client,
                                                                    make_repo, tmp_path):
    repo, trigger, name, registry = deploy_project
    old_image = docker_client.images.build(
        path=str(repo.path), dockerfile="Dockerfile", tag=f"buildhook-test-old-{uuid.uuid4().hex[:8]}", rm=True)[0]
    container_name = f"staging-{uuid.uuid4().hex[:8]}"
    old = docker_client.containers.run(old_image.id, name=container_name, detach=True, network_mode="none",
                                       environment={"APP_ENV": "staging"}, labels={"team": "platform"},
                                       command=["/bin/busybox", "sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"])
    try:
        add_rule(client, name, registry, targets=[{"kind": "docker", "container": container_name}])
        build = push_and_build(client, repo, trigger)
        deployment = wait_for(
            lambda: [d for d in deployments_of(client, build["id"]) if d["state"] in ("succeeded", "failed")],
            90, "the container deployment")[0]
        assert deployment["state"] == "succeeded", (deployment["error"], deployment["log"])
        new = docker_client.containers.get(container_name)
        assert new.id != old.id
        assert new.status == "running"
        pulled = docker_client.images.get(f"{build['image']}@{build['digest']}")
        assert new.image.id == pulled.id
        assert "APP_ENV=staging" in new.attrs["Config"]["Env"]
        assert new.labels["team"] == "platform"
    finally:
        for leftover in docker_client.containers.list(all=True, filters={"name": container_name}):
            leftover.remove(force=True)


def test_the_same_event_twice_deploys_once(app, client, web_server, service_env, receiver):
    import urllib.request

    repository = f"acme/twice-{uuid.uuid4().hex[:8]}"
    client.post("/api/deploy-rules", json={"repository": repository, "tag": "1.6.1", "environment": "staging",
                                           "targets": [{"kind": "webhook", "url": f"{receiver.url}/deploy"}]})
    envelope = json.loads((FIXTURES / "registry" / "keel_registry_push_manifest_tag.json").read_text())
    envelope["events"][0]["id"] = str(uuid.uuid4())
    envelope["events"][0]["target"]["repository"] = repository
    envelope["events"][0]["request"]["host"] = service_env["BUILDHOOK_REGISTRY"]  # the rule's registry (the default)
    body = json.dumps(envelope).encode()
    headers = {"Authorization": f"Bearer {service_env['BUILDHOOK_REGISTRY_EVENTS_TOKEN']}",
               "Content-Type": "application/vnd.docker.distribution.events.v1+json"}
    answers = []
    for _ in range(2):
        request = urllib.request.Request(f"{web_server}/registry/events", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            answers.append(json.load(response))
    assert [a["accepted"] for a in answers] == [1, 0]
    assert answers[1]["duplicates"] == 1
    deployments = [d for d in client.get("/api/deployments").json["deployments"] if d["repository"] == repository]
    assert len(deployments) == 1


def test_subscribers_get_build_image_and_deployment_events(client, deploy_project, receiver):
    repo, trigger, name, registry = deploy_project
    made = client.post("/api/subscriptions", json={
        "url": f"{receiver.url}/events", "secret": "sub-secret", "trigger": trigger["id"], "ref_pattern": "main",
        "events": ["build.started", "build.succeeded", "image.pushed", "deployment.succeeded"]})
    assert made.status_code == 201, made.json
    slack = client.post("/api/subscriptions", json={"url": f"{receiver.url}/slack", "events": ["build.succeeded"],
                                                    "style": "slack", "trigger": trigger["id"]})
    assert slack.status_code == 201
    add_rule(client, name, registry, targets=[{"kind": "webhook", "url": f"{receiver.url}/deploy"}])
    build = push_and_build(client, repo, trigger)

    wanted = {"build.started", "build.succeeded", "image.pushed", "deployment.succeeded"}

    def all_events():
        seen = {r.headers["X-Buildhook-Event"] for r in receiver.posts("/events")}
        return seen if wanted <= seen else None

    wait_for(all_events, 60, "every subscribed event")
    for request in receiver.posts("/events"):
        assert verify_signature(request.body, request.headers["X-Buildhook-Signature"], "sub-secret")
        data = json.loads(request.body)["data"]
        assert data["build"] == build["id"]
    [slack_post] = wait_for(lambda: receiver.posts("/slack") or None, 30, "the Slack message")
    message = json.loads(slack_post.body)
    assert name in json.dumps(message) and "text" in message
    assert "X-Buildhook-Signature" not in slack_post.headers


def test_a_failed_delivery_can_be_redelivered_by_hand(client, deploy_project, receiver):
    repo, trigger, name, registry = deploy_project
    add_rule(client, name, registry, targets=[{"kind": "webhook", "url": f"{receiver.url}/deploy"}])
    receiver.failures.extend([410])  # a permanent refusal: not retried
    build = push_and_build(client, repo, trigger)

    def failed():
        deliveries = client.get(f"/api/deliveries?build={build['id']}").json["deliveries"]
        return [d for d in deliveries if d["event"] == "deployment.requested" and d["state"] == "failed"] or None

    [delivery] = wait_for(failed, 60, "the refused delivery to fail")
    assert delivery["last_status_code"] == 410 and delivery["attempts"] == 1
    assert [d["state"] for d in deployments_of(client, build["id"])] == ["failed"]

    again = client.post(f"/api/deliveries/{delivery['id']}/redeliver")
    assert again.status_code == 202
    wait_for(lambda: client.get(f"/api/deliveries/{delivery['id']}").json["state"] == "succeeded", 30,
             "the redelivery to succeed")
    wait_for(lambda: [d["state"] for d in deployments_of(client, build["id"])] == ["succeeded"], 30,
             "the deployment to count as done")
    first, second = receiver.posts("/deploy")
    assert first.headers["X-Buildhook-Delivery"] == second.headers["X-Buildhook-Delivery"]
    assert first.body == second.body
