"""POST /registry/events and the other registries' hooks: tokens, ignored events, deploy rules matched.

No worker here: these check what is recorded and which deployments are queued.
Targets point at a closed loopback port, so nothing that runs later reaches out; events
name the session's own registry (``BUILDHOOK_REGISTRY``), the one deploy rules default to.
"""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select

from builder.db.models import Deployment, RegistryEvent
from tests.challenging_registry import challenging_registry  # noqa: F401 (a fixture)
from tests.conftest import FIXTURES, ROOT

V1 = "application/vnd.docker.distribution.events.v1+json"
CLOSED = "http://127.0.0.1:9/deploy"
DOCS = FIXTURES / "other_registries"


@pytest.fixture
def token(settings):
    return settings.registry_events_token


def post(client, token, body: bytes, content_type=V1, path="/registry/events", auth="header"):
    headers = {"Content-Type": content_type, "Authorization": ""}  # not the test client's API token
    if auth == "header":
        headers["Authorization"] = f"Bearer {token}"
    elif auth == "query":
        path = f"{path}?token={token}"
    return client.post(path, data=body, headers=headers)


def envelope(repository: str, tag: str | None, action="push",
             media="application/vnd.docker.distribution.manifest.v2+json", host: str = "127.0.0.1:1"):
    event = json.loads((FIXTURES / "registry" / "keel_registry_push_manifest_tag.json").read_text())["events"][0]
    event.update(id=str(uuid.uuid4()), action=action)
    event["target"].update(repository=repository, mediaType=media)
    event["request"]["host"] = host
    if tag is None:
        event["target"].pop("tag", None)
    else:
        event["target"]["tag"] = tag
    return {"events": [event]}


def rule(client, repository, tag, target=CLOSED, registry=None):
    response = client.post("/api/deploy-rules", json={"repository": repository, "tag": tag, "environment": "staging",
                                                      "targets": [{"kind": "webhook", "url": target}],
                                                      **({"registry": registry} if registry else {})})
    assert response.status_code == 201, response.json
    return response.json


def deployments(app, repository):
    with app.extensions["buildhook"].sessions() as session:
        return list(session.scalars(select(Deployment).where(Deployment.repository == repository)))


def events(app, repository):
    with app.extensions["buildhook"].sessions() as session:
        return list(session.scalars(select(RegistryEvent).where(RegistryEvent.repository == repository)))


@pytest.mark.parametrize("auth, status", [("none", 401), ("wrong", 401), ("header", 202), ("query", 202)])
def test_the_registry_token_is_required(client, token, auth, status):
    body = json.dumps(envelope("acme/token", "v1")).encode()
    if auth == "wrong":
        response = client.post("/registry/events", data=body,
                               headers={"Content-Type": V1, "Authorization": "Bearer nope"})
    else:
        response = post(client, token, body, auth=auth)
    assert response.status_code == status


def test_without_a_configured_token_every_notification_is_refused(settings):
    from webhooks import create_app

    client = create_app(settings.with_(registry_events_token=None)).test_client()
    response = client.post("/registry/events", data=b'{"events": []}', headers={"Content-Type": V1})
    assert response.status_code == 401
    assert "BUILDHOOK_REGISTRY_EVENTS_TOKEN" in response.json["error"]


@pytest.mark.parametrize("name, reasons", [
    ("distribution_docs_pull_envelope.json", ["pull"]),
    ("distribution_docs_push_envelope.json", ["without a tag", "layer", "layer"]),
])
def test_pulls_blobs_and_tagless_manifests_are_recorded_and_never_deployed(app, client, token, name, reasons):
    rule(client, "library/test", "*")
    rule(client, "hello-world", "*")
    body = (FIXTURES / "registry" / name).read_bytes()
    response = post(client, token, body)
    assert response.status_code == 202
    assert response.json["accepted"] == 0 and response.json["deployments"] == []
    assert response.json["ignored"] + response.json["duplicates"] == len(reasons)
    with app.extensions["buildhook"].sessions() as session:
        ids = [e["id"] for e in json.loads(body)["events"]]
        recorded = list(session.scalars(select(RegistryEvent).where(RegistryEvent.event_id.in_(ids))))
    assert len(recorded) == len(reasons)
    assert all(r.outcome == "ignored" for r in recorded)
    for reason in reasons:
        assert any(reason in (r.reason or "") for r in recorded), (reason, [r.reason for r in recorded])
    assert deployments(app, "library/test") == [] and deployments(app, "hello-world") == []


@pytest.mark.parametrize("tag, deployed", [("1.6.1", True), ("1.9.0", True), ("2.0.0", False), ("1.6.1-rc.1", False),
                                           ("latest", False)])
def test_a_semver_range_rule_deploys_only_versions_inside_it(app, client, token, settings, tag, deployed):
    repository = f"acme/semver-{uuid.uuid4().hex[:6]}"
    rule(client, repository, ">=1.6 <2")
    response = post(client, token, json.dumps(envelope(repository, tag, host=settings.registry)).encode())
    assert response.status_code == 202
    assert len(deployments(app, repository)) == (1 if deployed else 0)
    [event] = events(app, repository)
    assert event.outcome == ("accepted" if deployed else "no_rule")


def test_one_envelope_with_many_events_in_any_order(app, client, token, settings):
    repository = f"acme/many-{uuid.uuid4().hex[:6]}"
    rule(client, repository, "v*")
    events_ = [envelope(repository, tag, host=settings.registry)["events"][0] for tag in ("v2", "v1", "dev")]
    events_.append(envelope(repository, None, action="pull")["events"][0])
    response = post(client, token, json.dumps({"events": events_}).encode())
    assert response.json["accepted"] == 3 and response.json["ignored"] == 1
    assert sorted(d.tag for d in deployments(app, repository)) == ["v1", "v2"]


@pytest.mark.parametrize("content_type, status", [("text/plain", 415), (V1, 400)])
def test_wrong_content_type_or_bad_json_is_refused(client, token, content_type, status):
    assert post(client, token, b"{not json", content_type=content_type).status_code == status


OTHER_REGISTRIES = ("docker.io", "quay.io", "hub.harbor.com", "myregistry.azurecr.io")


@pytest.fixture
def trusting_others(settings, admin_token):
    """The app with the registries of tests/fixtures/other_registries/ in BUILDHOOK_TRUSTED_REGISTRIES (the session's
    worker does not trust them, so it fails their deployments without contacting them)."""
    from tests.conftest import signed_in
    from webhooks import create_app

    other = create_app(settings.with_(trusted_registries=OTHER_REGISTRIES))
    return other, signed_in(other.test_client(), admin_token)


@pytest.mark.parametrize("source, file, host, repository, tag", [
    ("dockerhub", "dockerhub_docs_push.json", "docker.io", "svendowideit/testhook", "latest"),
    ("quay", "quay_docs_repo_push.json", "quay.io", "dgangaia/test", "latest"),
    ("harbor", "harbor_docs_push_artifact.json", "hub.harbor.com", "test-webhook/debian", "latest"),
    ("acr", "acr_docs_push.json", "myregistry.azurecr.io", "hello-world", "v1"),
])
def test_other_registries_webhooks_become_the_same_image_pushed_event(trusting_others, token, source, file, host,
                                                                       repository, tag):
    app, client = trusting_others
    made = rule(client, repository, tag, registry=host)
    body = (DOCS / file).read_bytes()
    response = post(client, token, body, content_type="application/json", path=f"/registry/hooks/{source}",
                    auth="query")
    assert response.status_code == 202, response.json
    assert response.json["accepted"] == 1
    ours = [d for d in deployments(app, repository) if d.rule_id == made["id"]]
    assert len(ours) == response.json["accepted"]
    assert any(e.tag == tag and e.outcome == "accepted" for e in events(app, repository))


def test_deploy_rules_refuse_targets_pointing_at_buildhook_itself(client, settings):
    response = client.post("/api/deploy-rules", json={
        "repository": "acme/x", "tag": "main", "environment": "staging",
        "targets": [{"kind": "webhook", "url": f"{settings.public_url}/api/triggers"}]})
    assert response.status_code == 400


# --- issue 13: credentials bound to registries ---------------------------------------------------------------

PASSWORD = "hunter2-never-elsewhere"


def app_with(settings, admin_token, **changes):
    """The app with other settings (e.g. registry credentials), on the session's database."""
    from tests.conftest import signed_in
    from webhooks import create_app

    other = create_app(settings.with_(registry_username="robot", registry_password=PASSWORD, **changes))
    return other, signed_in(other.test_client(), admin_token)


def run_deployments(app, repository) -> list[Deployment]:
    """Run the event's deployments here through the worker's task, with ``app``'s settings (none, if none were
    made)."""
    from workers.tasks import deploy

    with app.app_context():
        for deployment in deployments(app, repository):
            deploy.run(deployment.id)
    return deployments(app, repository)


def test_an_event_naming_a_loopback_listener_sends_it_no_credentials(settings, admin_token, token,
                                                                      challenging_registry):
    app, client = app_with(settings, admin_token)
    repository = f"acme/leak-{uuid.uuid4().hex[:6]}"
    rule(client, repository, "main")  # of BUILDHOOK_REGISTRY, the one with credentials
    response = post(client, token, json.dumps(envelope(repository, "main", host=challenging_registry.host)).encode())
    made = run_deployments(app, repository)
    assert challenging_registry.authorizations() == []
    assert challenging_registry.seen == []  # not even contacted
    assert response.status_code == 202 and response.json["deployments"] == [] and made == []
    [event] = events(app, repository)
    assert event.outcome == "ignored" and f"registry {challenging_registry.host} is not trusted" in event.reason


def test_a_trusted_registry_gets_its_own_credentials_not_those_of_buildhook_registry(settings, admin_token, token,
                                                                                       challenging_registry):
    app, client = app_with(settings, admin_token, trusted_registries=(challenging_registry.host,))
    repository = f"acme/own-creds-{uuid.uuid4().hex[:6]}"
    made = rule(client, repository, "main", registry=challenging_registry.host)
    assert made["registry"] == challenging_registry.host
    post(client, token, json.dumps(envelope(repository, "main", host=challenging_registry.host)).encode())
    [deployment] = run_deployments(app, repository)
    assert challenging_registry.seen, "the trusted registry is asked for the digest"
    assert challenging_registry.authorizations() == []  # it has no credentials of its own: none are sent
    assert deployment.state == "failed" and f"registry {challenging_registry.host} refused" in deployment.error


@pytest.mark.parametrize("host", ["127.attacker.example:5000", "evil.example:5000"])
def test_an_event_for_another_registry_is_recorded_ignored_and_deploys_nothing(app, client, token, host):
    repository = f"acme/widget-{uuid.uuid4().hex[:6]}"
    rule(client, repository, "main")
    response = post(client, token, json.dumps(envelope(repository, "main", host=host)).encode())
    assert response.status_code == 202
    assert (response.json["accepted"], response.json["ignored"], response.json["deployments"]) == (0, 1, [])
    assert deployments(app, repository) == []
    [event] = events(app, repository)
    assert (event.outcome, event.registry_host) == ("ignored", host)
    assert f"registry {host} is not trusted" in event.reason
    shown = [e for e in client.get("/api/registry-events?limit=500").json["registry_events"]
             if e["repository"] == repository]
    assert shown[0]["outcome"] == "ignored" and host in shown[0]["reason"]


def test_a_rule_deploys_only_from_its_own_registry(settings, admin_token, token, challenging_registry):
    app, client = app_with(settings, admin_token, trusted_registries=(challenging_registry.host,))
    repository = f"acme/two-registries-{uuid.uuid4().hex[:6]}"
    rule(client, repository, "main")  # BUILDHOOK_REGISTRY, the default
    response = post(client, token, json.dumps(envelope(repository, "main", host=challenging_registry.host)).encode())
    assert response.json["deployments"] == [] and deployments(app, repository) == []
    [event] = events(app, repository)
    assert event.outcome == "ignored"
    assert event.reason == (f"registry {challenging_registry.host} is not the registry of the deploy rules for "
                            f"{repository}:main ({settings.registry})")


def test_a_deploy_rule_names_a_trusted_registry_and_defaults_to_buildhook_registry(client, settings):
    default = rule(client, f"acme/default-{uuid.uuid4().hex[:6]}", "main")
    assert default["registry"] == settings.registry
    assert any(r["id"] == default["id"] and r["registry"] == settings.registry
               for r in client.get("/api/deploy-rules").json["deploy_rules"])
    for untrusted in ("evil.example:5000", "127.0.0.1:5399", "not a host"):
        response = client.post("/api/deploy-rules", json={
            "repository": "acme/x", "tag": "main", "environment": "staging", "registry": untrusted,
            "targets": [{"kind": "webhook", "url": CLOSED}]})
        assert response.status_code == 400, untrusted
        assert untrusted in response.json["error"]
