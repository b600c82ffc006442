"""GET /api/openapi.json: the document is well formed, documents every /api/ route, and real answers match it.

The answers are the app's own, on the real database and broker, without a worker:
triggers with rules, builds from a signed GitHub push and from manual runs, deploy
rules, registry notifications, deployments, subscriptions and deliveries (one of them
sent once to a closed port). Every target is a closed loopback port, so nothing
reaches out. Answers are validated with every object of the document closed
(additionalProperties: false), so a field added to a ``*_to_dict`` and not to the
document fails here.
"""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from types import SimpleNamespace
from typing import Any, Callable

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from sqlalchemy import select, update

from builder.accounts.users import add_user, create_token
from builder.builds.run.log import BuildLog
from builder.notify.deliveries import send_delivery
from builder.db.models import Build, Deployment, OutboundDelivery, Trigger, utcnow
from tests.conftest import FIXTURES, GitRepo, git, signed_in
from tests.openapi_environment_cases import ENVIRONMENT_CASES
from tests.payloads import fixture, github_headers, github_push
from webhooks.hooks import ROUTE, HookFront
from webhooks.openapi import document

DOC_URI = "urn:buildhook:openapi"
SECRET = "openapi-webhook-secret"
CLOSED = "http://127.0.0.1:1"
V1 = "application/vnd.docker.distribution.events.v1+json"
DIGEST = "sha256:" + uuid.uuid4().hex * 2
MISSING = 987654321
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
REQUIRED_SCHEMAS = {"Build", "Trigger", "Rule", "LogLines", "DeployRule", "Deployment", "RegistryEvent", "Delivery",
                    "Subscription", "Error", "HookResult", "RegistryResult"}
# Being added by other changes at the same time: exercised once routed, skipped until then.
CONCURRENT = {("post", "/api/builds/{build_id}/cancel"), ("post", "/api/builds/{build_id}/rebuild"),
              ("get", "/api/builds/{build_id}/log/stream")}

DOC = document()


def shape(template: str) -> str:
    """``/api/builds/{build_id}`` and Flask's ``/api/builds/<int:build_id>`` both become ``/api/builds/{}``."""
    return re.sub(r"\{[^}]*\}|<[^>]*>", "{}", template)


def routes(app) -> set[tuple[str, str]]:
    """What the app serves: Flask's routes, and the webhook route its front answers (webhooks/hooks.py)."""
    front = {("post", shape(ROUTE))} if isinstance(app.wsgi_app, HookFront) else set()
    return front | {(method.lower(), shape(rule.rule)) for rule in app.url_map.iter_rules()
                    for method in (rule.methods or set()) & METHODS}


def operations(prefix: str = "/") -> set[tuple[str, str]]:
    return {(method, template) for template, item in DOC["paths"].items() if template.startswith(prefix)
            for method in item}


def pointer_to(*parts: str) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def resolve(pointer: str) -> Any:
    """What a JSON pointer (``/a/b``, or a ``#/a/b`` reference) names in the document."""
    node: Any = DOC
    for part in pointer.removeprefix("#").lstrip("/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def closed(node: Any) -> Any:
    """A copy where every object schema with properties refuses others."""
    if isinstance(node, list):
        return [closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    copied = {key: closed(value) for key, value in node.items()}
    if isinstance(node.get("properties"), dict) and "additionalProperties" not in node:
        copied["additionalProperties"] = False
    return copied


STRICT = Registry().with_resource(DOC_URI, DRAFT202012.create_resource(closed(copy.deepcopy(DOC))))
AS_WRITTEN = Registry().with_resource(DOC_URI, DRAFT202012.create_resource(DOC))


def check(instance: Any, pointer: str, registry: Registry = STRICT) -> None:
    validator = Draft202012Validator({"$ref": f"{DOC_URI}#{pointer}"}, registry=registry,
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    error = best_match(validator.iter_errors(instance))
    if error is not None:
        raise AssertionError(f"{pointer}: {error.message} at {list(error.absolute_path)}\n"
                             f"{json.dumps(instance, indent=1)[:3000]}")


# --- (a) the document itself ------------------------------------------------------------


def test_the_document_has_the_openapi_3_1_structure():
    assert DOC["openapi"].startswith("3.1.") and DOC["info"]["title"] and DOC["info"]["version"]
    assert DOC["paths"] and REQUIRED_SCHEMAS <= set(DOC["components"]["schemas"])
    bearer = DOC["components"]["securitySchemes"]["bearerAuth"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert DOC["security"] == [{"bearerAuth": []}]
    for schema in DOC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    seen_ids: set[str] = set()
    for template, item in DOC["paths"].items():
        for method, op in item.items():
            assert method in {"get", "post", "put", "patch", "delete"}, (template, method)
            assert op["operationId"] not in seen_ids
            seen_ids.add(op["operationId"])
            assert op["responses"], (template, method)
            declared = {resolve(p["$ref"])["name"] if "$ref" in p else p["name"]
                        for p in op.get("parameters", []) if "$ref" in p or p["in"] == "path"}
            assert set(re.findall(r"\{([^}]+)\}", template)) <= declared, (template, method)
            for code, response in op["responses"].items():
                response = resolve(response["$ref"]) if "$ref" in response else response
                assert response["description"], (template, method, code)
                assert response.get("content") or code == "204", (template, method, code)  # 204: no body
                if code[0] in "45":
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/Error"}, (template, method, code)
            for requirement in op.get("security", DOC["security"]):
                assert set(requirement) <= set(DOC["components"]["securitySchemes"])


def test_text_and_page_size_query_parameters_are_declared_as_the_api_reads_them():
    retention = {p["name"]: p["schema"] for p in DOC["paths"]["/api/retention-deletions"]["get"]["parameters"]
                 if "name" in p}
    assert retention["outcome"] == {"type": "string", "enum": ["deleted", "refused", "missing", "kept"]}
    for template, item in DOC["paths"].items():
        for method, op in item.items():
            for parameter in op.get("parameters", []):
                parameter = resolve(parameter["$ref"]) if "$ref" in parameter else parameter
                if parameter["name"] == "limit":
                    assert parameter["schema"]["minimum"] == 1, (template, method)


def test_every_ref_resolves():
    def walk(node: Any, where: str) -> int:
        if isinstance(node, dict):
            found = 0
            if "$ref" in node:
                assert node["$ref"].startswith("#/"), where
                resolve(node["$ref"])  # raises KeyError if it does not resolve
                found = 1
            return found + sum(walk(value, f"{where}/{key}") for key, value in node.items())
        if isinstance(node, list):
            return sum(walk(item, f"{where}/{index}") for index, item in enumerate(node))
        return 0

    assert walk(DOC, "#") > 50


def test_every_api_route_is_documented(app):
    """So a new endpoint cannot be forgotten: add it to webhooks/openapi.py."""
    documented = {(method, shape(template)) for method, template in operations()}
    undocumented = {route for route in routes(app) if route[1].startswith("/api/")} - documented
    assert not undocumented, f"routes missing from webhooks/openapi.py: {sorted(undocumented)}"


def test_every_documented_endpoint_is_routed(app):
    pending = {(method, shape(template)) for method, template in CONCURRENT}
    missing = {(m, shape(t)) for m, t in operations()} - routes(app) - pending
    assert not missing, f"documented but not routed: {sorted(missing)}"


def test_the_served_document_is_the_module_s(client, settings):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.json == json.loads(json.dumps(document(settings.public_url)))
    assert response.json["servers"] == [{"url": settings.public_url}]


# --- (b) real answers -------------------------------------------------------------------


def _repo(root) -> tuple[GitRepo, str]:
    git(root, "init", "-q", "-b", "main")
    repo = GitRepo(root)
    head = repo.commit({"Dockerfile": "FROM scratch\n", "src/app.txt": "v1\n"}, "initial commit")
    repo.tag("v1.2.3")
    return repo, head


def push(client, trigger: dict, ref: str, sha: str, name: str = "push_branch", secret: str = SECRET,
         event: str = "push", delivery: str | None = None):
    payload = github_push(name, repository=trigger["repository"], ref=ref, sha=sha, clone_url=trigger["clone_url"])
    body = json.dumps(payload).encode()
    headers = github_headers(body, secret, event, delivery)
    return client.post("/hooks/github", data=body, headers={**headers, "Authorization": ""})


def envelope(repository: str, tag: str | None, digest: str = DIGEST, action: str = "push",
             host: str = "127.0.0.1:1") -> dict:
    event = json.loads((FIXTURES / "registry" / "keel_registry_push_manifest_tag.json").read_text())["events"][0]
    event.update(id=str(uuid.uuid4()), action=action)
    event["target"].update(repository=repository, digest=digest, tag=tag)
    event["request"]["host"] = host
    if tag is None:
        del event["target"]["tag"]
    return {"events": [event]}


def notify(client, token: str, body: bytes, content_type: str = V1, path: str = "/registry/events"):
    return client.post(path, data=body, headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def world(app, admin_token, settings, tmp_path_factory):
    """Triggers, builds in several states, a log, deploy rules, deployments, events, subscriptions, deliveries."""
    admin = signed_in(app.test_client(), admin_token)
    sessions = app.extensions["buildhook"].sessions
    suffix = uuid.uuid4().hex[:8]
    repo, head = _repo(tmp_path_factory.mktemp("openapi-repo"))
    image = f"acme/openapi-{suffix}"

    def trigger(name: str, **fields: Any) -> dict:
        body = {"provider": "github", "repository": f"acme/{name}-{suffix}", "clone_url": repo.url,
                "secret": SECRET, "image": image, **fields}
        response = admin.post("/api/triggers", json=body)
        assert response.status_code == 201, response.json
        return response.json

    main = trigger("openapi", rules=[
        {"source": "branch", "tags": ["{branch}", "{short_sha}", "latest"], "ignored_files": ["**/*.lock"]},
        {"source": "tag", "match": "regex", "pattern": r"v(\d+)\.(\d+)\.\d+", "dockerfile": "Dockerfile",
         "build_args": {"CHANNEL": "stable"}, "secret_build_args": {"NPM_TOKEN": "openapi-npm-token"},
         "target": "release", "tags": ["{version}", "{major}.{minor}", "v{\\1}"]},
    ])
    unreachable = trigger("openapi-unreachable", provider="gitlab", clone_url="file:///nonexistent/openapi.git",
                          api_url="https://gitlab.example.com", clone_token="not-a-real-token")
    tags_only = trigger("openapi-tags", rules=[{"source": "tag", "pattern": "v*"}], supersede=False)
    disabled = trigger("openapi-disabled", ssh_key="-----BEGIN OPENSSH PRIVATE KEY-----\nnone\n",
                       ssh_known_hosts="example.com ssh-ed25519 AAAA", status_token="not-a-real-token")
    with sessions() as session:
        session.get(Trigger, disabled["id"]).enabled = False
        session.commit()

    builds = {}
    for branch in ("main", "feature/failed", "release/queued"):
        response = push(admin, main, f"refs/heads/{branch}", head)
        assert response.status_code == 202 and response.json["outcome"] == "accepted", response.json
        [builds[branch]] = response.json["builds"]
    now = utcnow()
    with sessions() as session:
        done = session.get(Build, builds["main"])
        done.state, done.digest, done.attempts = "succeeded", DIGEST, 1
        done.started_at = done.cloning_at = done.building_at = done.pushing_at = done.finished_at = now
        failed = session.get(Build, builds["feature/failed"])
        failed.state, failed.error, failed.started_at, failed.finished_at = "failed", "the build failed", now, now
        session.commit()
    log = BuildLog(sessions, builds["main"], flush_every=0)
    for text in ("Checked out " + head, "Step 1/1 : FROM scratch", "Pushed " + DIGEST):
        log(text)
    log.flush()

    subscriptions = [admin.post("/api/subscriptions", json=body).json for body in (
        {"url": f"{CLOSED}/events", "events": ["image.pushed"], "secret": "sub-secret", "trigger": main["id"]},
        {"url": f"{CLOSED}/slack", "events": ["image.pushed", "build.failed"], "trigger": main["id"],
         "ref_pattern": "main", "style": "slack"},
    )]
    rule = admin.post("/api/deploy-rules", json={
        "repository": image, "tag": "main", "environment": "staging", "targets": [
            {"kind": "webhook", "url": f"{CLOSED}/deploy", "secret": "deploy-secret"},
            {"kind": "docker", "container": f"openapi-{suffix}", "docker_host": "tcp://127.0.0.1:1"}]}).json
    token = settings.registry_events_token
    events = envelope(image, "main", host=settings.registry)  # the registry deploy rules default to
    events["events"] += envelope(image, None, action="pull")["events"]
    received = notify(admin, token, json.dumps(events).encode())
    assert received.status_code == 202 and len(received.json["deployments"]) == 2, received.json
    with sessions() as session:
        [sent, unsent] = session.scalars(select(OutboundDelivery.id).where(
            OutboundDelivery.build_id == builds["main"]).order_by(OutboundDelivery.id))
    assert send_delivery(sessions, app.extensions["buildhook"].box, sent, timeout=2, backoff_base=600,
                         policy=settings.target_policy()) == "pending"

    with sessions() as session:
        viewer = add_user(session, f"openapi-viewer-{suffix}", "viewer-password", "viewer")
        _row, viewer_token = create_token(session, viewer)
        session.commit()
    yield SimpleNamespace(
        repo=repo, head=head, image=image, suffix=suffix, token=token, trigger=main, unreachable=unreachable,
        tags_only=tags_only, disabled=disabled, build_ok=builds["main"], build_failed=builds["feature/failed"],
        build_queued=builds["release/queued"], rule=rule, subscriptions=subscriptions,
        deployment=received.json["deployments"][0], sent=sent, unsent=unsent,
        anonymous=app.test_client(), viewer=signed_in(app.test_client(), viewer_token),
        max_body=settings.max_body_bytes, sessions=sessions)
    retire(sessions, main["id"], image)


def retire(sessions, trigger_id: int, image: str) -> None:
    """Nothing this module queued is left for the session's worker (which starts after it) to run."""
    with sessions() as session:
        session.execute(update(Build).where(Build.trigger_id == trigger_id, Build.state == "queued")
                        .values(state="superseded", reason="test_openapi: never run"))
        session.execute(update(Deployment).where(Deployment.repository == image, Deployment.state == "pending")
                        .values(state="failed", error="test_openapi: never run"))
        mine = select(Build.id).where(Build.trigger_id == trigger_id)
        session.execute(update(OutboundDelivery).where(OutboundDelivery.build_id.in_(mine),
                                                       OutboundDelivery.state == "pending").values(state="failed"))
        session.commit()


class Recording:
    """The test client, remembering the JSON body it sent (to check it against the request schema)."""

    def __init__(self, client) -> None:
        self.client, self.sent = client, None

    def get(self, *args, **kwargs):
        return self.client.get(*args, **kwargs)

    def post(self, *args, **kwargs):
        self.sent = kwargs.get("json")
        return self.client.post(*args, **kwargs)

    def patch(self, *args, **kwargs):
        self.sent = kwargs.get("json")
        return self.client.patch(*args, **kwargs)

    def delete(self, *args, **kwargs):
        return self.client.delete(*args, **kwargs)

    def put(self, *args, **kwargs):
        self.sent = kwargs.get("json")
        return self.client.put(*args, **kwargs)


Make = Callable[[Any, SimpleNamespace], Any]


def case(method: str, template: str, status: int, make: Make, note: str = ""):
    return pytest.param(method, template, make, status, id=f"{method.upper()} {template} {status} {note}".strip())


def new_trigger(w: SimpleNamespace) -> dict:
    return {"provider": "gitea", "repository": f"acme/openapi-new-{uuid.uuid4().hex[:6]}",
            "clone_url": "https://gitea.example.com/acme/new.git", "secret": "s", "image": "acme/new",
            "default_branch": "trunk", "dockerfile": "build/Dockerfile", "supersede": True,
            "rules": [{"source": "branch", "match": "exact", "pattern": "trunk", "tags": ["{sha}"],
                       "secret_build_args": {"NPM_TOKEN": "openapi-new-npm-token"}}]}


def deploy_rule(w: SimpleNamespace, tag: str = ">=1.2 <2") -> dict:
    return {"repository": f"{w.image}-rule", "tag": tag, "environment": "production",
            "targets": [{"kind": "webhook", "url": f"{CLOSED}/deploy"}]}


def subscription(w: SimpleNamespace, **extra: Any) -> dict:
    return {"url": f"{CLOSED}/hook", "events": ["build.succeeded", "deployment.failed"], "trigger": w.trigger["id"],
            **extra}


def hook_twice(c, w: SimpleNamespace):
    delivery = str(uuid.uuid4())
    push(c, w.trigger, "refs/heads/main", w.head, delivery=delivery)
    return push(c, w.trigger, "refs/heads/main", w.head, delivery=delivery)


def ping(c, w: SimpleNamespace):
    payload = fixture("github/ping.json")
    payload["repository"]["full_name"] = w.trigger["repository"]
    body = json.dumps(payload).encode()
    return c.post("/hooks/github", data=body, headers=github_headers(body, SECRET, "ping"))


def dockerhub(c, w: SimpleNamespace, body: bytes | None = None, source: str = "dockerhub"):
    """Docker Hub's documented push, for a repository of this module's own (event ids derive from it)."""
    if body is None:
        payload = json.loads((FIXTURES / "other_registries" / "dockerhub_docs_push.json").read_text())
        payload["repository"].update(repo_name=f"acme/openapi-hub-{w.suffix}", namespace="acme",
                                     name=f"openapi-hub-{w.suffix}")
        payload["push_data"]["pushed_at"] = int(time.time() * 1000) % 2**31
        body = json.dumps(payload).encode()
    return c.post(f"/registry/hooks/{source}?token={w.token}", data=body,
                  headers={"Content-Type": "application/json", "Authorization": ""})


def fresh_trigger(c, w: SimpleNamespace) -> int:
    """A trigger of its own for a case that changes or deletes one (the world's stay as they are)."""
    created = c.client.post("/api/triggers", json=new_trigger(w)) if isinstance(c, Recording) else \
        c.post("/api/triggers", json=new_trigger(w))
    assert created.status_code == 201, created.json
    return created.json["id"]


def delete_while_building(c, w: SimpleNamespace):
    """DELETE a trigger whose build runs: 409; the build is failed afterwards (nothing left for the worker)."""
    trigger_id = fresh_trigger(c, w)
    with w.sessions() as session:
        build = Build(trigger_id=trigger_id, provider="gitea", repository="acme/running", clone_url=CLOSED,
                      ref="refs/heads/trunk", ref_type="branch", ref_name="trunk", commit="a" * 40,
                      image="acme/new", tags=["x"], dockerfile="Dockerfile", context=".", state="building")
        session.add(build)
        session.commit()
        build_id = build.id
    response = c.delete(f"/api/triggers/{trigger_id}")
    with w.sessions() as session:
        session.get(Build, build_id).state = "failed"
        session.commit()
    return response


def new_user(c, w: SimpleNamespace, role: str = "viewer") -> str:
    name = f"openapi-{role}-{uuid.uuid4().hex[:8]}"
    created = (c.client if isinstance(c, Recording) else c).post(
        "/api/users", json={"name": name, "role": role, "password": "a-long-password"})
    assert created.status_code == 201, created.json
    return name


def new_token_id(c, w: SimpleNamespace) -> int:
    created = (c.client if isinstance(c, Recording) else c).post("/api/tokens", json={"user": new_user(c, w)})
    assert created.status_code == 201, created.json
    return created.json["id"]


def user_twice(c, w: SimpleNamespace):
    body = {"name": new_user(c, w), "role": "viewer", "password": "another-long-password"}
    return c.post("/api/users", json=body)


B, T, D = "/api/builds/{build_id}", "/api/triggers/{trigger_id}", "/api/deliveries/{delivery_id}"
U, K = "/api/users", "/api/tokens"
PATCHED = {"image": "acme/patched", "default_branch": "develop", "build_timeout": 900, "secret": "new-secret",
           "clone_token": "tok", "clone_username": "oauth2", "status_token": None, "supersede": False,
           "rules": [{"source": "tag", "match": "regex", "pattern": r"v(\d+)", "tags": ["v{\\1}"],
                      "secret_build_args": ["NPM_TOKEN"]}]}
CASES = [
    case("get", "/api/openapi.json", 200, lambda c, w: c.get("/api/openapi.json")),
    case("get", "/api/openapi.json", 401, lambda c, w: w.anonymous.get("/api/openapi.json"), "anonymous"),
    case("get", "/api/triggers", 200, lambda c, w: c.get("/api/triggers")),
    case("get", "/api/triggers", 401, lambda c, w: w.anonymous.get("/api/triggers"), "anonymous"),
    case("post", "/api/triggers", 201, lambda c, w: c.post("/api/triggers", json=new_trigger(w))),
    case("post", "/api/triggers", 201, lambda c, w: c.post("/api/triggers", json={
        **new_trigger(w), "rules": [], "api_url": None, "clone_token": "t", "clone_username": "oauth2"}), "defaults"),
    case("post", "/api/triggers", 400, lambda c, w: c.post("/api/triggers", json={"provider": "github"}), "missing"),
    case("post", "/api/triggers", 400, lambda c, w: c.post("/api/triggers", json={
        **new_trigger(w), "rules": [{"source": "tag", "tags": ["{branch}"]}]}), "bad template"),
    case("post", "/api/triggers", 403, lambda c, w: w.viewer.post("/api/triggers", json=new_trigger(w)), "viewer"),
    case("get", T, 200, lambda c, w: c.get(f"/api/triggers/{w.trigger['id']}")),
    case("get", T, 200, lambda c, w: c.get(f"/api/triggers/{w.disabled['id']}"), "disabled"),
    case("get", T, 404, lambda c, w: c.get(f"/api/triggers/{MISSING}")),
    case("post", f"{T}/runs", 201, lambda c, w: c.post(f"/api/triggers/{w.trigger['id']}/runs",
                                                       json={"branch": "main"}), "branch"),
    case("post", f"{T}/runs", 201, lambda c, w: c.post(f"/api/triggers/{w.trigger['id']}/runs",
                                                       json={"tag": "v1.2.3"}), "tag"),
    case("post", f"{T}/runs", 201, lambda c, w: c.post(f"/api/triggers/{w.trigger['id']}/runs",
                                                       json={"sha": w.head[:7], "branch": "main"}), "sha"),
    case("post", f"{T}/runs", 400, lambda c, w: c.post(f"/api/triggers/{w.trigger['id']}/runs", json={})),
    case("post", f"{T}/runs", 403, lambda c, w: w.viewer.post(f"/api/triggers/{w.trigger['id']}/runs",
                                                              json={"branch": "main"}), "viewer"),
    case("post", f"{T}/runs", 404, lambda c, w: c.post(f"/api/triggers/{MISSING}/runs", json={"branch": "main"})),
    case("post", f"{T}/runs", 404, lambda c, w: c.post(f"/api/triggers/{w.trigger['id']}/runs",
                                                       json={"branch": "no-such-branch"}), "branch"),
    case("post", f"{T}/runs", 409, lambda c, w: c.post(f"/api/triggers/{w.disabled['id']}/runs",
                                                       json={"branch": "main"}), "disabled"),
    case("post", f"{T}/runs", 422, lambda c, w: c.post(f"/api/triggers/{w.tags_only['id']}/runs",
                                                       json={"branch": "main"}), "no rule"),
    case("post", f"{T}/runs", 503, lambda c, w: c.post(f"/api/triggers/{w.unreachable['id']}/runs",
                                                       json={"branch": "main"}), "unreachable"),
    case("get", "/api/builds", 200, lambda c, w: c.get("/api/builds")),
    case("get", "/api/builds", 200, lambda c, w: c.get(f"/api/builds?limit=1&trigger={w.trigger['id']}"), "page"),
    case("get", "/api/builds", 200, lambda c, w: c.get(f"/api/builds?before={w.build_queued}&limit=500"), "before"),
    case("get", "/api/builds", 400, lambda c, w: c.get("/api/builds?limit=ten")),
    case("get", "/api/builds", 200, lambda c, w: c.get(
        f"/api/builds?repository={w.trigger['repository']}&ref=main&state=succeeded,failed&state=queued"
        "&since=2020-01-01T00:00:00Z&until=2999-12-31"), "filtered"),
    case("get", "/api/builds", 400, lambda c, w: c.get("/api/builds?state=exploded"), "state"),
    case("get", "/api/builds", 400, lambda c, w: c.get("/api/builds?since=yesterday"), "since"),
    case("get", "/api/overview", 200, lambda c, w: c.get("/api/overview")),
    case("get", "/api/overview", 200, lambda c, w: w.viewer.get("/api/overview?days=1"), "one day"),
    case("get", "/api/overview", 400, lambda c, w: c.get("/api/overview?days=0")),
    case("get", "/api/overview", 401, lambda c, w: w.anonymous.get("/api/overview"), "anonymous"),
    case("patch", T, 200, lambda c, w: c.patch(f"/api/triggers/{fresh_trigger(c, w)}", json=PATCHED)),
    case("patch", T, 200, lambda c, w: c.patch(f"/api/triggers/{fresh_trigger(c, w)}", json={
        "enabled": False, "build_timeout": None}), "disable"),
    case("patch", T, 400, lambda c, w: c.patch(f"/api/triggers/{fresh_trigger(c, w)}", json={
        "rules": [{"source": "tag", "tags": ["{branch}"]}]}), "bad template"),
    case("patch", T, 400, lambda c, w: c.patch(f"/api/triggers/{fresh_trigger(c, w)}", json={
        "build_timeout": 0}), "timeout"),
    case("patch", T, 200, lambda c, w: c.patch(f"/api/triggers/{fresh_trigger(c, w)}", json={
        "rules": [{"source": "branch", "secret_build_args": {"GEM_TOKEN": "g"}}, {"source": "tag",
                                                                                 "secret_build_args": None}]}),
         "secret build args"),
    case("patch", T, 400, lambda c, w: c.patch(f"/api/triggers/{fresh_trigger(c, w)}", json={
        "rules": [{"source": "branch", "secret_build_args": {"not a name": "x"}}]}), "secret build arg name"),
    case("patch", T, 403, lambda c, w: w.viewer.patch(f"/api/triggers/{w.trigger['id']}", json={"enabled": False})),
    case("patch", T, 404, lambda c, w: c.patch(f"/api/triggers/{MISSING}", json={"enabled": False})),
    case("delete", T, 204, lambda c, w: c.delete(f"/api/triggers/{fresh_trigger(c, w)}")),
    case("delete", T, 403, lambda c, w: w.viewer.delete(f"/api/triggers/{w.trigger['id']}")),
    case("delete", T, 404, lambda c, w: c.delete(f"/api/triggers/{MISSING}")),
    case("delete", T, 409, delete_while_building, "building"),
    case("get", f"{T}/deliveries", 200, lambda c, w: c.get(f"/api/triggers/{w.trigger['id']}/deliveries")),
    case("get", f"{T}/deliveries", 200, lambda c, w: w.viewer.get(
        f"/api/triggers/{w.trigger['id']}/deliveries?limit=1&before={MISSING}"), "page"),
    case("get", f"{T}/deliveries", 400, lambda c, w: c.get(f"/api/triggers/{w.trigger['id']}/deliveries?limit=x")),
    case("get", f"{T}/deliveries", 404, lambda c, w: c.get(f"/api/triggers/{MISSING}/deliveries")),
    case("get", U, 200, lambda c, w: c.get("/api/users")),
    case("get", U, 403, lambda c, w: w.viewer.get("/api/users"), "viewer"),
    case("post", U, 201, lambda c, w: c.post("/api/users", json={
        "name": f"openapi-{uuid.uuid4().hex[:8]}", "role": "admin", "password": "a-long-password"})),
    case("post", U, 400, lambda c, w: c.post("/api/users", json={"name": "x", "role": "root", "password": "p"})),
    case("post", U, 403, lambda c, w: w.viewer.post("/api/users", json={
        "name": "openapi-never", "role": "admin", "password": "a-long-password"}), "viewer"),
    case("post", U, 409, user_twice, "taken"),
    case("patch", f"{U}/{{name}}", 200, lambda c, w: c.patch(f"/api/users/{new_user(c, w)}", json={
        "password": "a-different-long-password"})),
    case("patch", f"{U}/{{name}}", 400, lambda c, w: c.patch(f"/api/users/{new_user(c, w)}", json={
        "password": "password"})),
    case("patch", f"{U}/{{name}}", 403, lambda c, w: w.viewer.patch("/api/users/test-admin", json={
        "password": "a-different-long-password"}), "viewer"),
    case("patch", f"{U}/{{name}}", 404, lambda c, w: c.patch("/api/users/nobody-at-all", json={
        "password": "a-different-long-password"})),
    case("delete", f"{U}/{{name}}", 204, lambda c, w: c.delete(f"/api/users/{new_user(c, w)}")),
    case("delete", f"{U}/{{name}}", 403, lambda c, w: w.viewer.delete("/api/users/test-admin"), "viewer"),
    case("delete", f"{U}/{{name}}", 404, lambda c, w: c.delete("/api/users/nobody-at-all")),
    case("delete", f"{U}/{{name}}", 409, lambda c, w: c.delete("/api/users/test-admin"), "yourself"),
    case("get", K, 200, lambda c, w: c.get("/api/tokens")),
    case("get", K, 200, lambda c, w: w.viewer.get("/api/tokens"), "own"),
    case("post", K, 201, lambda c, w: c.post("/api/tokens", json={})),
    case("post", K, 201, lambda c, w: c.post("/api/tokens", json={"user": new_user(c, w)}), "for a user"),
    case("post", K, 400, lambda c, w: c.post("/api/tokens", json={"owner": "x"})),
    case("post", K, 403, lambda c, w: w.viewer.post("/api/tokens", json={}), "viewer"),
    case("post", K, 404, lambda c, w: c.post("/api/tokens", json={"user": "nobody-at-all"})),
    case("delete", f"{K}/{{token_id}}", 204, lambda c, w: c.delete(f"/api/tokens/{new_token_id(c, w)}")),
    case("delete", f"{K}/{{token_id}}", 403, lambda c, w: w.viewer.delete(f"/api/tokens/{MISSING}"), "viewer"),
    case("delete", f"{K}/{{token_id}}", 404, lambda c, w: c.delete(f"/api/tokens/{MISSING}")),
    case("get", "/api/builds", 401, lambda c, w: w.anonymous.get("/api/builds"), "anonymous"),
    case("get", B, 200, lambda c, w: c.get(f"/api/builds/{w.build_ok}"), "succeeded"),
    case("get", B, 200, lambda c, w: c.get(f"/api/builds/{w.build_failed}"), "failed"),
    case("get", B, 200, lambda c, w: c.get(f"/api/builds/{w.build_queued}"), "queued"),
    case("get", B, 404, lambda c, w: c.get(f"/api/builds/{MISSING}")),
    case("get", f"{B}/log", 200, lambda c, w: c.get(f"/api/builds/{w.build_ok}/log")),
    case("get", f"{B}/log", 200, lambda c, w: c.get(f"/api/builds/{w.build_ok}/log?after=2"), "after"),
    case("get", f"{B}/log", 200, lambda c, w: c.get(f"/api/builds/{w.build_queued}/log"), "empty"),
    case("get", f"{B}/log", 200, lambda c, w: c.get(f"/api/builds/{w.build_ok}/log?format=text"), "text"),
    case("get", f"{B}/log", 200, lambda c, w: c.get(f"/api/builds/{w.build_ok}/log?format=text&download=1"), "file"),
    case("get", f"{B}/log", 400, lambda c, w: c.get(f"/api/builds/{w.build_ok}/log?after=-1")),
    case("get", f"{B}/log", 404, lambda c, w: c.get(f"/api/builds/{MISSING}/log")),
    case("get", f"{B}/log/stream", 200, lambda c, w: c.get(f"/api/builds/{w.build_failed}/log/stream")),
    case("get", f"{B}/log/stream", 400, lambda c, w: c.get(f"/api/builds/{w.build_ok}/log/stream?after=x")),
    case("get", f"{B}/log/stream", 404, lambda c, w: c.get(f"/api/builds/{MISSING}/log/stream")),
    case("post", f"{B}/cancel", 202, lambda c, w: c.post(f"/api/builds/{w.build_queued}/cancel")),
    case("post", f"{B}/cancel", 403, lambda c, w: w.viewer.post(f"/api/builds/{w.build_queued}/cancel")),
    case("post", f"{B}/cancel", 404, lambda c, w: c.post(f"/api/builds/{MISSING}/cancel")),
    case("post", f"{B}/cancel", 409, lambda c, w: c.post(f"/api/builds/{w.build_ok}/cancel"), "finished"),
    case("post", f"{B}/rebuild", 201, lambda c, w: c.post(f"/api/builds/{w.build_failed}/rebuild")),
    case("post", f"{B}/rebuild", 404, lambda c, w: c.post(f"/api/builds/{MISSING}/rebuild")),
    case("get", "/api/deploy-rules", 200, lambda c, w: c.get("/api/deploy-rules")),
    case("post", "/api/deploy-rules", 201, lambda c, w: c.post("/api/deploy-rules", json=deploy_rule(w))),
    case("post", "/api/deploy-rules", 201, lambda c, w: c.post("/api/deploy-rules", json={
        **deploy_rule(w, "release-.*"), "tag_match": "regex",
        "targets": [{"kind": "docker", "container": "openapi-never", "docker_host": None}]}), "docker"),
    case("post", "/api/deploy-rules", 400, lambda c, w: c.post("/api/deploy-rules", json={
        **deploy_rule(w), "targets": []}), "no target"),
    case("post", "/api/deploy-rules", 400, lambda c, w: c.post("/api/deploy-rules", json={
        **deploy_rule(w), "registry": "evil.example:5000"}), "untrusted registry"),
    case("post", "/api/deploy-rules", 403, lambda c, w: w.viewer.post("/api/deploy-rules", json=deploy_rule(w))),
    case("get", "/api/deployments", 200, lambda c, w: c.get("/api/deployments?limit=500")),
    case("get", "/api/deployments", 200, lambda c, w: c.get(f"/api/deployments?build={w.build_ok}"), "of a build"),
    case("get", "/api/deployments", 400, lambda c, w: c.get("/api/deployments?limit=-5")),
    case("get", "/api/registry-events", 200, lambda c, w: c.get("/api/registry-events?limit=500")),
    case("get", "/api/registry-events", 400, lambda c, w: c.get("/api/registry-events?limit=x")),
    case("get", "/api/retention-deletions", 200, lambda c, w: c.get("/api/retention-deletions?limit=500")),
    case("get", "/api/retention-deletions", 200,
         lambda c, w: c.get(f"/api/retention-deletions?trigger={w.trigger['id']}&outcome=kept"), "filtered"),
    case("get", "/api/retention-deletions", 400, lambda c, w: c.get("/api/retention-deletions?outcome=gone")),
    case("get", "/api/deliveries", 200, lambda c, w: c.get("/api/deliveries?limit=500")),
    case("get", "/api/deliveries", 200, lambda c, w: c.get(f"/api/deliveries?build={w.build_ok}"), "of a build"),
    case("get", "/api/deliveries", 200, lambda c, w: c.get(f"/api/deliveries?deployment={w.deployment}"), "deploy"),
    case("get", "/api/deliveries", 400, lambda c, w: c.get("/api/deliveries?limit=many")),
    case("get", D, 200, lambda c, w: c.get(f"/api/deliveries/{w.sent}"), "attempted"),
    case("get", D, 200, lambda c, w: c.get(f"/api/deliveries/{w.unsent}"), "not yet sent"),
    case("get", D, 404, lambda c, w: c.get(f"/api/deliveries/{MISSING}")),
    case("post", f"{D}/redeliver", 202, lambda c, w: c.post(f"/api/deliveries/{w.sent}/redeliver")),
    case("post", f"{D}/redeliver", 403, lambda c, w: w.viewer.post(f"/api/deliveries/{w.sent}/redeliver")),
    case("post", f"{D}/redeliver", 404, lambda c, w: c.post(f"/api/deliveries/{MISSING}/redeliver")),
    case("post", f"{D}/redeliver", 409, lambda c, w: c.post(f"/api/deliveries/{w.unsent}/redeliver")),
    case("get", "/api/subscriptions", 200, lambda c, w: c.get("/api/subscriptions")),
    case("post", "/api/subscriptions", 201, lambda c, w: c.post("/api/subscriptions", json=subscription(w))),
    case("post", "/api/subscriptions", 201, lambda c, w: c.post("/api/subscriptions", json=subscription(
        w, events=["*"], secret="s", ref_pattern="release/*", style="slack")), "all"),
    case("post", "/api/subscriptions", 400, lambda c, w: c.post("/api/subscriptions", json={"events": ["*"]})),
    case("post", "/api/subscriptions", 400, lambda c, w: c.post("/api/subscriptions", json=subscription(
        w, events=["build.exploded"])), "event"),
    case("post", "/api/subscriptions", 403, lambda c, w: w.viewer.post("/api/subscriptions", json=subscription(w))),
    case("post", "/hooks/{provider}", 202, lambda c, w: push(c, w.trigger, "refs/heads/hook", w.head), "accepted"),
    case("post", "/hooks/{provider}", 202, hook_twice, "duplicate"),
    case("post", "/hooks/{provider}", 202, lambda c, w: push(c, w.trigger, "refs/heads/gone", w.head,
                                                             "push_branch_deleted"), "ignored"),
    case("post", "/hooks/{provider}", 202, lambda c, w: push(c, {**w.trigger, "repository": "acme/nobody"},
                                                             "refs/heads/main", w.head), "no trigger"),
    case("post", "/hooks/{provider}", 200, ping, "ping"),
    case("post", "/hooks/{provider}", 400, lambda c, w: c.post("/hooks/github", data=b"[1, 2",
                                                               headers={"X-GitHub-Event": "push"})),
    case("post", "/hooks/{provider}", 401, lambda c, w: push(c, w.trigger, "refs/heads/main", w.head,
                                                             secret="wrong"), "signature"),
    case("post", "/hooks/{provider}", 404, lambda c, w: c.post("/hooks/svn", data=b"{}")),
    case("post", "/hooks/{provider}", 413, lambda c, w: c.post("/hooks/github", data=b" " * (w.max_body + 1),
                                                               headers={"X-GitHub-Event": "push"})),
    case("post", "/registry/events", 202, lambda c, w: notify(c, w.token, json.dumps(
        envelope(f"acme/openapi-norule-{w.suffix}", "v1")).encode())),
    case("post", "/registry/events", 400, lambda c, w: notify(c, w.token, b"{not json")),
    case("post", "/registry/events", 401, lambda c, w: notify(c, "wrong-token", b'{"events": []}')),
    case("post", "/registry/events", 413, lambda c, w: notify(c, w.token, b" " * (w.max_body + 1))),
    case("post", "/registry/events", 415, lambda c, w: notify(c, w.token, b'{"events": []}', "text/plain")),
    case("post", "/registry/hooks/{source}", 202, dockerhub),
    case("post", "/registry/hooks/{source}", 400, lambda c, w: dockerhub(c, w, b"{}")),
    case("post", "/registry/hooks/{source}", 401, lambda c, w: c.post("/registry/hooks/quay", data=b"{}",
                                                                      headers={"Authorization": ""})),
    case("post", "/registry/hooks/{source}", 404, lambda c, w: dockerhub(c, w, b"{}", "nexus")),
    case("get", "/healthz", 200, lambda c, w: w.anonymous.get("/healthz")),
    case("get", "/badge/{trigger}.svg", 200, lambda c, w: c.get(f"/badge/{w.trigger['id']}.svg?branch=main")),
    case("get", "/badge/{trigger}.svg", 404, lambda c, w: w.anonymous.get(f"/badge/{w.trigger['id']}.svg")),
    *(case(method, template, status, make, note) for method, template, status, make, note in ENVIRONMENT_CASES),
]


def test_every_api_operation_has_a_case(app):
    exercised = {(values[0], values[1]) for values in (c.values for c in CASES)}
    assert operations("/api/") - exercised == set()
    assert {(m, t) for m, t in operations() if not t.startswith("/api/")} - exercised == set()


@pytest.mark.parametrize("method, template, make, status", CASES)
def test_real_answers_match_the_document(app, client, world, method, template, make, status):
    if (method, template) in CONCURRENT and (method, shape(template)) not in routes(app):
        pytest.skip(f"{method.upper()} {template} is being added concurrently and is not routed yet")
    recording = Recording(client)
    response = make(recording, world)
    try:
        assert response.status_code == status, response.get_data(as_text=True)[:1000]
        operation = DOC["paths"][template][method]
        documented = operation["responses"].get(str(status))
        assert documented is not None, f"{status} is not documented for {method.upper()} {template}"
        base = (documented["$ref"].removeprefix("#") if "$ref" in documented
                else pointer_to("paths", template, method, "responses", str(status)))
        if status == 204:
            assert response.get_data() == b"" and "content" not in resolve(base)
            return
        content = resolve(base)["content"]
        assert response.mimetype in content, f"{response.mimetype} not documented: {sorted(content)}"
        schema_at = base + pointer_to("content", response.mimetype, "schema")
        if response.mimetype == "application/json":
            check(response.get_json(), schema_at)
        elif response.mimetype == "text/plain":
            check(response.get_data(as_text=True), schema_at)
        if status < 300 and recording.sent is not None:  # what we sent is what the document asks for
            check(recording.sent, pointer_to("paths", template, method, "requestBody", "content", "application/json",
                                             "schema"), AS_WRITTEN)
    finally:
        response.close()
