"""Issue 13, findings 4 and 7: outbound URLs are sealed and shown redacted; outbound targets are checked.

The probes: a viewer (or an admin) reading credentials, tokens and Slack paths of outbound URLs
through the API; the database holding them in clear; subscriptions, deploy webhooks and docker
engines pointing at internal addresses or at buildhook itself. Nothing here connects to anything
but 127.0.0.1; refused targets are refused before any connection.
"""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import text

from builder.accounts.users import add_user, create_token
from builder.notify.deliveries import new_delivery, redeliver, send_delivery
from builder.deploys.deployments import delivery_finished
from builder.deploys.runner import run_deployment
from builder.db.models import DeployTarget, Deployment
from builder.notify.subscriptions import notify
from builder.notify.urls import SealedUrl
from tests.conftest import signed_in
from webhooks import create_app

PASSWORD = "pa55-" + uuid.uuid4().hex
QUERY_TOKEN = "qt" + uuid.uuid4().hex
SLACK_TOKEN = "SlackPathSecret" + uuid.uuid4().hex[:12]
DEPLOY_TOKEN = "dt" + uuid.uuid4().hex
SECRETS = {"password": PASSWORD, "query token": QUERY_TOKEN, "slack path": f"B0/{SLACK_TOKEN}",
           "deploy token": DEPLOY_TOKEN, "user": "robot-user"}


@pytest.fixture(scope="module")
def viewer_client(app):
    with app.extensions["buildhook"].sessions() as session:
        _row, token = create_token(session, add_user(session, f"outbound-viewer-{uuid.uuid4().hex[:8]}",
                                                     "viewer-password", "viewer"))
        session.commit()
    return signed_in(app.test_client(), token)


@pytest.fixture(scope="module")
def outbound(app, admin_token):
    """Two subscriptions and a deploy rule with secrets in their URLs, and a delivery to each."""
    client = signed_in(app.test_client(), admin_token)
    ref = f"outbound-secrets-{uuid.uuid4().hex[:8]}"  # no build has this ref: nothing else is notified
    hook = client.post("/api/subscriptions", json={
        "url": f"http://robot-user:{PASSWORD}@127.0.0.1:1/hook?token={QUERY_TOKEN}&env=prod",
        "events": ["build.failed"], "ref_pattern": ref})
    slack = client.post("/api/subscriptions", json={
        "url": f"https://hooks.slack.com/services/T0/B0/{SLACK_TOKEN}", "events": ["build.failed"],
        "ref_pattern": ref, "style": "slack"})
    rule = client.post("/api/deploy-rules", json={
        "repository": f"acme/outbound-{uuid.uuid4().hex[:8]}", "tag": "main", "environment": "staging",
        "targets": [{"kind": "webhook", "url": f"http://127.0.0.1:1/deploy?token={DEPLOY_TOKEN}"}]})
    assert (hook.status_code, slack.status_code, rule.status_code) == (201, 201, 201), (hook.json, slack.json)
    with app.extensions["buildhook"].sessions() as session:
        ours = {hook.json["id"], slack.json["id"]}  # other tests' subscriptions to every ref are notified too
        deliveries = [d for d in notify(session, "build.failed", {"state": "failed"}, max_attempts=8, ref_name=ref)
                      if d.subscription_id in ours]
        target = session.get(DeployTarget, rule.json["targets"][0]["id"])
        deliveries.append(new_delivery("deployment.requested", SealedUrl(target.url_enc, target.url_redacted),
                                       {"environment": "staging"}, None, max_attempts=8))
        session.add(deliveries[-1])
        for delivery in deliveries:  # failed already: no worker sends them
            delivery.state, delivery.attempts = "failed", 1
        session.commit()
        ids = [d.id for d in deliveries]
    return {"subscriptions": [hook.json["id"], slack.json["id"]], "rule": rule.json["id"],
            "target": rule.json["targets"][0]["id"], "deliveries": ids}


@pytest.mark.parametrize("who", ["viewer", "admin"])
def test_the_api_shows_outbound_urls_redacted_to_viewers_and_admins(client, viewer_client, outbound, who):
    reader = viewer_client if who == "viewer" else client
    answers = {path: reader.get(path) for path in (
        "/api/subscriptions", "/api/deliveries", "/api/deploy-rules",
        *(f"/api/deliveries/{d}" for d in outbound["deliveries"]))}
    for path, answer in answers.items():
        assert answer.status_code == 200, path
        for what, secret in SECRETS.items():
            assert secret not in answer.text, f"{what} shown to the {who} by {path}"
    subscriptions = {s["id"]: s["url"] for s in answers["/api/subscriptions"].json["subscriptions"]}
    assert [subscriptions[i] for i in outbound["subscriptions"]] == [
        "http://****:****@127.0.0.1:1/hook?token=****&env=****", "https://hooks.slack.com/services/****"]
    [rule] = [r for r in answers["/api/deploy-rules"].json["deploy_rules"] if r["id"] == outbound["rule"]]
    assert rule["targets"][0]["url"] == "http://127.0.0.1:1/deploy?token=****"
    shown = {d["id"]: d["url"] for d in answers["/api/deliveries"].json["deliveries"]}
    assert [shown[i] for i in outbound["deliveries"]] == [
        "http://****:****@127.0.0.1:1/hook?token=****&env=****", "https://hooks.slack.com/services/****",
        "http://127.0.0.1:1/deploy?token=****"]


def test_the_database_holds_no_outbound_url_in_clear(app, outbound):
    services = app.extensions["buildhook"]
    queries = [("subscriptions", outbound["subscriptions"]), ("deploy_targets", [outbound["target"]]),
               ("outbound_deliveries", outbound["deliveries"])]
    with services.engine.connect() as conn:
        for table, ids in queries:
            rows = conn.execute(text(f"SELECT * FROM {table} WHERE id IN ({','.join(map(str, ids))})")).mappings().all()
            assert len(rows) == len(ids)
            for row in rows:
                stored = json.dumps({k: str(v) for k, v in row.items()})
                for what, secret in SECRETS.items():
                    assert secret not in stored, f"{what} in clear in {table}"
                assert "url" not in row  # only url_enc (sealed) and url_redacted
                assert services.box.open(row["url_enc"]).startswith(("http://", "https://"))
        [sealed] = conn.execute(text("SELECT url_enc FROM subscriptions WHERE id = :id"),
                                {"id": outbound["subscriptions"][1]}).one()
    assert services.box.open(sealed) == f"https://hooks.slack.com/services/T0/B0/{SLACK_TOKEN}"


@pytest.fixture(scope="module")
def strict_client(settings, admin_token):
    """An app without BUILDHOOK_ALLOW_PRIVATE_TARGETS, as a production one would be."""
    return signed_in(create_app(settings.with_(allow_private_targets=())).test_client(), admin_token)


@pytest.mark.parametrize("url, reason", [
    ("http://10.0.0.5/hook", "refused: 10.0.0.5 is a private address; list it in BUILDHOOK_ALLOW_PRIVATE_TARGETS"),
    ("http://169.254.169.254/latest/meta-data/iam", "169.254.169.254 is a link-local address"),
    ("http://127.0.0.1:9000/hook", "127.0.0.1 is a loopback address"),
    ("http://localhost:6379/", "127.0.0.1 is a loopback address"),
    ("http://[::ffff:192.168.0.10]/hook", "192.168.0.10 is a private address"),
])
def test_subscriptions_and_deploy_webhooks_to_internal_addresses_are_refused(strict_client, url, reason):
    for path, body in (("/api/subscriptions", {"url": url, "events": ["build.failed"]}),
                       ("/api/deploy-rules", {"repository": "acme/internal", "tag": "main", "environment": "x",
                                              "targets": [{"kind": "webhook", "url": url}]})):
        answer = strict_client.post(path, json=body)
        assert answer.status_code == 400 and reason in answer.json["error"], (path, answer.json)


def test_buildhook_itself_is_refused_under_another_name(settings, admin_token):
    own = signed_in(create_app(settings.with_(public_url="http://127.0.0.1:8000")).test_client(), admin_token)
    for url in ("http://localhost:8000/hooks/github", "http://127.0.0.1:8000/api/triggers", "http://[::1]:8000/"):
        answer = own.post("/api/subscriptions", json={"url": url, "events": ["build.failed"]})
        assert answer.status_code == 400 and "buildhook itself" in answer.json["error"], (url, answer.json)
    allowed = own.post("/api/subscriptions", json={"url": "http://localhost:8001/elsewhere", "events": ["build.failed"],
                                                   "ref_pattern": "never-" + uuid.uuid4().hex})
    assert allowed.status_code == 201, allowed.json


def test_docker_targets_are_unix_sockets_or_listed_tcp_engines(client, strict_client):
    def rule(docker_host):
        return {"repository": f"acme/engine-{uuid.uuid4().hex[:8]}", "tag": "main", "environment": "prod",
                "targets": [{"kind": "docker", "container": "web", "docker_host": docker_host}]}

    refused = strict_client.post("/api/deploy-rules", json=rule("tcp://10.1.2.3:2375"))
    assert refused.status_code == 400
    assert "docker host tcp://10.1.2.3:2375 is not listed in BUILDHOOK_ALLOW_PRIVATE_TARGETS" in refused.json["error"]
    assert strict_client.post("/api/deploy-rules", json=rule("ssh://root@10.1.2.3")).status_code == 400
    assert strict_client.post("/api/deploy-rules", json=rule("tcp://127.0.0.1:2375")).status_code == 400
    assert strict_client.post("/api/deploy-rules", json=rule("unix:///var/run/docker.sock")).status_code == 201
    assert client.post("/api/deploy-rules", json=rule("tcp://127.0.0.1:2375")).status_code == 201  # listed


def test_a_docker_engine_allowed_when_created_but_not_when_deploying_is_refused(app, settings, client):
    rule = client.post("/api/deploy-rules", json={
        "repository": f"acme/engine-{uuid.uuid4().hex[:8]}", "tag": "main", "environment": "prod",
        "targets": [{"kind": "docker", "container": "web", "docker_host": "tcp://127.0.0.1:1"}]})
    assert rule.status_code == 201, rule.json
    services = app.extensions["buildhook"]
    with services.sessions() as session:
        deployment = Deployment(rule_id=rule.json["id"], target_id=rule.json["targets"][0]["id"], environment="prod",
                                kind="docker", registry_host="127.0.0.1:1", repository="acme/engine", tag="main")
        session.add(deployment)
        session.commit()
        deployment_id = deployment.id
    run_deployment(services.sessions, settings.with_(allow_private_targets=()), deployment_id)
    shown = [d for d in client.get("/api/deployments").json["deployments"] if d["id"] == deployment_id]
    assert shown[0]["state"] == "failed"
    assert shown[0]["error"].startswith("refused: docker host tcp://127.0.0.1:1 is not listed in "
                                        "BUILDHOOK_ALLOW_PRIVATE_TARGETS")


def test_a_target_allowed_when_created_but_not_when_sent_is_refused_and_not_retried(app, settings, client, receiver):
    services = app.extensions["buildhook"]
    rule = client.post("/api/deploy-rules", json={
        "repository": f"acme/later-{uuid.uuid4().hex[:8]}", "tag": "main", "environment": "staging",
        "targets": [{"kind": "webhook", "url": f"{receiver.url}/deploy"}]})
    assert rule.status_code == 201, rule.json
    with services.sessions() as session:
        target = session.get(DeployTarget, rule.json["targets"][0]["id"])
        deployment = Deployment(rule_id=target.rule_id, target_id=target.id, environment="staging", kind="webhook",
                                repository="acme/later", tag="main", state="running")
        session.add(deployment)
        session.flush()
        delivery = new_delivery("deployment.requested", SealedUrl(target.url_enc, target.url_redacted),
                                {"environment": "staging"}, None, max_attempts=8,
                                deployment_id=deployment.id)
        session.add(delivery)
        session.commit()
        delivery_id, deployment_id = delivery.id, deployment.id

    strict = settings.with_(allow_private_targets=())
    assert send_delivery(services.sessions, services.box, delivery_id, on_finished=delivery_finished(strict),
                         policy=strict.target_policy()) == "failed"
    reason = "refused: 127.0.0.1 is a loopback address; list it in BUILDHOOK_ALLOW_PRIVATE_TARGETS to allow it"
    shown = client.get(f"/api/deliveries/{delivery_id}").json
    assert (shown["state"], shown["attempts"], shown["last_status_code"]) == ("failed", 1, None)
    assert shown["last_response"] == reason and shown["attempts_log"][0]["response"] == reason
    assert receiver.received == []  # nothing was sent
    with services.sessions() as session:
        failed = session.get(Deployment, deployment_id)
        assert failed.state == "failed" and reason in failed.error

    with services.sessions() as session:  # listed again: a redelivery goes through
        redeliver(session, delivery_id)
        session.commit()
    assert send_delivery(services.sessions, services.box, delivery_id, on_finished=delivery_finished(settings),
                         policy=settings.target_policy()) == "succeeded"
    assert [r.path for r in receiver.received] == ["/deploy"]

