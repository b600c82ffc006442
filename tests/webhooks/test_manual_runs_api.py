"""POST /api/triggers/<id>/runs on real components: API -> Celery worker -> clone -> Docker build -> registry."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from builder.db.models import Build, Delivery
from tests.conftest import busybox_dockerfile, finished_build, git, log_text



@pytest.fixture
def project(client, make_repo):
    """A repository with a trigger (the default rules) pointing at it."""
    suffix = uuid.uuid4().hex[:8]
    repo = make_repo()
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": f"acme/manual-{suffix}", "clone_url": repo.url,
        "secret": "manual-secret", "image": f"acme/manual-{suffix}", "default_branch": "main",
    }).json
    return repo, trigger


def run(client, trigger_id, **kwargs):
    return client.post(f"/api/triggers/{trigger_id}/runs", **kwargs)




def deliveries(app, trigger_id):
    with app.extensions["buildhook"].sessions() as session:
        return list(session.scalars(select(Delivery).where(Delivery.trigger_id == trigger_id)
                                    .order_by(Delivery.id)))


def test_running_a_branch_builds_its_tip_and_pushes_the_image(client, app, worker, registry, project):
    repo, trigger = project
    sha = repo.commit({"Dockerfile": busybox_dockerfile(f"manual {uuid.uuid4()}")}, "manual run target")
    response = run(client, trigger["id"], json={"branch": "main"})
    assert response.status_code == 201, response.json
    [created] = response.json["builds"]
    assert (created["ref"], created["ref_type"], created["commit"]) == ("refs/heads/main", "branch", sha)
    assert created["tags"] == ["main", sha[:7], "latest"]
    assert created["trigger"] == trigger["id"]

    build = finished_build(client, created["id"])
    assert build["state"] == "succeeded", log_text(client, created["id"])
    name = trigger["image"]
    assert registry.tags(name) == sorted(["main", sha[:7], "latest"])
    for tag in build["tags"]:
        assert registry.digest(name, tag) == build["digest"]
    assert f"Checked out {sha}" in log_text(client, created["id"])

    [delivery] = deliveries(app, trigger["id"])
    assert (delivery.event, delivery.outcome, delivery.status_code) == ("manual", "accepted", 201)
    assert "manual run of branch 'main'" in delivery.reason
    with app.extensions["buildhook"].sessions() as session:
        stored = session.get(Build, created["id"])
        assert stored.delivery_id == delivery.id and stored.dispatched_at is not None


def test_running_an_annotated_tag_builds_the_tagged_commit_with_the_tag_name(
    client, worker, registry, project
):
    repo, trigger = project
    tagged = repo.commit({"Dockerfile": busybox_dockerfile("tagged")}, "release")
    git(repo.path, "tag", "-a", "v2.0.0", "-m", "release 2.0.0")
    repo.commit({"Dockerfile": busybox_dockerfile("after the tag")}, "later work")
    response = run(client, trigger["id"], json={"tag": "v2.0.0"})
    assert response.status_code == 201, response.json
    [created] = response.json["builds"]
    assert (created["ref"], created["commit"], created["tags"]) == ("refs/tags/v2.0.0", tagged, ["v2.0.0"])

    build = finished_build(client, created["id"])
    assert build["state"] == "succeeded", log_text(client, created["id"])
    assert "built tagged" in log_text(client, created["id"])
    assert registry.tags(trigger["image"]) == ["v2.0.0"]
    assert registry.digest(trigger["image"], "v2.0.0") == build["digest"]


def test_running_a_sha_builds_that_commit_of_the_default_branch(client, worker, registry, project):
    repo, trigger = project
    old = repo.commit({"Dockerfile": busybox_dockerfile("old")}, "old")
    repo.commit({"Dockerfile": busybox_dockerfile("new")}, "new head")
    response = run(client, trigger["id"], json={"sha": old[:12]})
    assert response.status_code == 201, response.json
    [created] = response.json["builds"]
    assert (created["ref"], created["commit"]) == ("refs/heads/main", old[:12])
    assert created["tags"] == ["main", old[:7], "latest"]
    build = finished_build(client, created["id"])
    assert build["state"] == "succeeded", log_text(client, created["id"])
    assert "built old" in log_text(client, created["id"])
    assert "built new" not in log_text(client, created["id"])


@pytest.mark.parametrize("kwargs, message", [
    ({"json": {"branch": "main", "tag": "v1.0.0"}}, "give only one"),
    ({"json": {}}, "name what to run"),
    ({"json": {"sha": "not-a-sha"}}, "is not a commit id"),
    ({"json": {"sha": "abc"}}, "is not a commit id"),
    ({"json": {"branch": 3}}, "must be strings"),
    ({"json": {"branch": "main", "ref": "x"}}, "unknown fields"),
    ({"json": ["main"]}, "expected a JSON object"),
    ({"data": "branch=main", "content_type": "application/x-www-form-urlencoded"}, "expected a JSON object"),
    ({"data": "{not json", "content_type": "application/json"}, "expected a JSON object"),
])
def test_bad_bodies_are_400_and_build_nothing(client, app, project, kwargs, message):
    _repo, trigger = project
    response = run(client, trigger["id"], **kwargs)
    assert response.status_code == 400, response.json
    assert message in response.json["error"]
    assert client.get(f"/api/builds?trigger={trigger['id']}").json["builds"] == []
    assert deliveries(app, trigger["id"]) == []


def test_an_unknown_trigger_is_404(client):
    response = run(client, 99999, json={"branch": "main"})
    assert response.status_code == 404
    assert "trigger 99999 not found" in response.json["error"]


def test_an_unknown_branch_or_tag_is_404(client, project):
    _repo, trigger = project
    response = run(client, trigger["id"], json={"branch": "no-such-branch"})
    assert response.status_code == 404
    assert "branch 'no-such-branch' not found" in response.json["error"]
    assert run(client, trigger["id"], json={"tag": "v404"}).status_code == 404
    assert client.get(f"/api/builds?trigger={trigger['id']}").json["builds"] == []


def test_an_unreachable_remote_is_503_and_hides_the_credentials(client):
    suffix = uuid.uuid4().hex[:8]
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": f"acme/down-{suffix}",
        "clone_url": "http://bot:hunter2@127.0.0.1:9/x.git", "secret": "s", "image": f"acme/down-{suffix}",
    }).json
    response = run(client, trigger["id"], json={"branch": "main"})
    assert response.status_code == 503, response.json
    assert "unreachable" in response.json["error"] and "hunter2" not in response.json["error"]


def test_a_run_no_rule_matches_is_422_and_recorded_as_ignored(client, app, make_repo):
    suffix = uuid.uuid4().hex[:8]
    repo = make_repo()
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": f"acme/tags-{suffix}", "clone_url": repo.url,
        "secret": "s", "image": f"acme/tags-{suffix}",
        "rules": [{"source": "tag", "pattern": "v*", "tags": ["{tag}"]}],
    }).json
    response = run(client, trigger["id"], json={"branch": "main"})
    assert response.status_code == 422, response.json
    assert "no rule of trigger" in response.json["error"]
    assert client.get(f"/api/builds?trigger={trigger['id']}").json["builds"] == []
    [delivery] = deliveries(app, trigger["id"])
    assert (delivery.event, delivery.outcome, delivery.status_code) == ("manual", "ignored", 422)


def test_running_a_private_repository_resolves_the_branch_with_the_triggers_token(client, make_repo, git_http):
    from tests.git_http_server import TOKEN

    repo = make_repo()
    sha = repo.commit({"p.txt": "private"}, "private tip")
    name = f"acme/private-{uuid.uuid4().hex[:8]}"
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": name, "clone_url": git_http.url("repo"), "secret": "s",
        "image": name, "clone_token": TOKEN}).json
    response = run(client, trigger["id"], json={"branch": "main"})
    assert response.status_code == 201, response.json
    assert [b["commit"] for b in response.json["builds"]] == [sha]
    assert TOKEN in git_http.attempts

    without = client.post("/api/triggers", json={
        "provider": "github", "repository": name + "-x", "clone_url": git_http.url("repo"), "secret": "s",
        "image": name + "-x"}).json
    refused = run(client, without["id"], json={"branch": "main"})
    assert refused.status_code == 502
    assert "authentication" in refused.json["error"]
