"""End to end on real components: signed GitHub push -> Celery worker -> clone -> Docker build -> registry.

Each test creates its own git repository (FROM scratch + the static busybox),
registers a trigger through the API, posts the real GitHub payload from
tests/fixtures/ rewritten to that repository, and waits for what a user sees.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest

from tests.conftest import busybox_dockerfile, finished_build, log_text, wait_for
from tests.payloads import github_headers, github_push

SECRET = "e2e-webhook-secret"


@pytest.fixture
def project(client, make_repo):
    """A repository with a trigger pointing at it."""
    suffix = uuid.uuid4().hex[:8]
    repo = make_repo()
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": f"acme/widget-{suffix}", "clone_url": repo.url,
        "secret": SECRET, "image": f"acme/widget-{suffix}", "default_branch": "main",
    }).json
    return repo, trigger


def push(client, trigger, ref, sha, fixture="push_branch", delivery=None):
    payload = github_push(fixture, repository=trigger["repository"], ref=ref, sha=sha,
                          clone_url=trigger["clone_url"])
    body = json.dumps(payload).encode()
    return client.post("/hooks/github", data=body, headers=github_headers(body, SECRET, delivery=delivery))




def test_branch_push_puts_an_image_in_the_registry_with_the_digest_the_api_reports(
    client, worker, registry, project, settings
):
    repo, trigger = project
    sha = repo.commit({"README.md": "hello\n"}, "Add a README")
    response = push(client, trigger, "refs/heads/main", sha)
    assert response.status_code == 202, response.json
    [build_id] = response.json["builds"]

    build = finished_build(client, build_id)
    assert build["state"] == "succeeded", log_text(client, build_id)
    assert build["tags"] == ["main", sha[:7], "latest"]
    name = trigger["image"]
    assert registry.tags(name) == sorted(["main", sha[:7], "latest"])
    for tag in build["tags"]:
        assert registry.digest(name, tag) == build["digest"]
    assert build["commit"] == sha and build["error"] is None
    assert build["created_at"] <= build["cloning_at"] <= build["building_at"] <= build["pushing_at"] <= build["finished_at"]

    listed = client.get("/api/builds").json["builds"]
    assert listed[0]["id"] >= build_id and build_id in [b["id"] for b in listed]
    log = log_text(client, build_id)
    assert f"Checked out {sha}" in log and "Pushed" in log
    page = client.get("/").get_data(as_text=True)
    assert trigger["repository"] in page and sha[:7] in page
    assert settings.effective_work_dir.is_dir(), "the worker clones under the data directory"
    assert list(settings.effective_work_dir.glob(f"build-{build_id}-*")) == [], "work directory removed"


def test_worker_builds_exactly_the_pushed_commit_not_the_branch_head(client, worker, registry, project):
    repo, trigger = project
    old = repo.commit({"Dockerfile": busybox_dockerfile("old")}, "old")
    repo.commit({"Dockerfile": busybox_dockerfile("new")}, "new head")
    build_id = push(client, trigger, "refs/heads/main", old).json["builds"][0]
    build = finished_build(client, build_id)
    assert build["state"] == "succeeded"
    assert "built old" in log_text(client, build_id)
    assert "built new" not in log_text(client, build_id)


def test_tag_push_gets_the_tag_name(client, worker, registry, project):
    repo, trigger = project
    sha = repo.tag("v1.4.0")
    response = push(client, trigger, "refs/tags/v1.4.0", sha, fixture="push_tag")
    build = finished_build(client, response.json["builds"][0])
    assert build["state"] == "succeeded"
    assert build["tags"] == ["v1.4.0"]
    assert registry.tags(trigger["image"]) == ["v1.4.0"]
    assert registry.digest(trigger["image"], "v1.4.0") == build["digest"]


def test_deletion_push_is_ignored_and_builds_nothing(client, worker, registry, project):
    _repo, trigger = project
    payload = github_push("push_branch_deleted", repository=trigger["repository"],
                          ref="refs/heads/feature-branch", sha=None, clone_url=trigger["clone_url"])
    body = json.dumps(payload).encode()
    response = client.post("/hooks/github", data=body, headers=github_headers(body, SECRET))
    assert response.status_code == 202 and response.json["outcome"] == "ignored"
    assert client.get(f"/api/builds?trigger={trigger['id']}").json["builds"] == []


def test_bad_signature_gets_401_and_nothing_is_built(client, worker, registry, project):
    repo, trigger = project
    sha = repo.commit({"a.txt": "a"})
    payload = github_push("push_branch", repository=trigger["repository"], ref="refs/heads/main",
                          sha=sha, clone_url=trigger["clone_url"])
    body = json.dumps(payload).encode()
    headers = github_headers(body, "wrong-secret")
    assert client.post("/hooks/github", data=body, headers=headers).status_code == 401
    assert client.get(f"/api/builds?trigger={trigger['id']}").json["builds"] == []
    assert registry.tags(trigger["image"]) == []


def test_replayed_delivery_gives_no_second_build(client, worker, registry, project):
    repo, trigger = project
    sha = repo.commit({"a.txt": "a"})
    delivery = str(uuid.uuid4())
    first = push(client, trigger, "refs/heads/main", sha, delivery=delivery)
    second = push(client, trigger, "refs/heads/main", sha, delivery=delivery)
    assert second.json["outcome"] == "duplicate"
    finished_build(client, first.json["builds"][0])
    assert len(client.get(f"/api/builds?trigger={trigger['id']}").json["builds"]) == 1


def test_dockerfile_error_fails_the_build_with_the_error_in_its_log(client, worker, registry, project):
    repo, trigger = project
    sha = repo.commit({"Dockerfile": busybox_dockerfile("broken", "RUN exit 3\n")}, "break the build")
    build_id = push(client, trigger, "refs/heads/main", sha).json["builds"][0]
    build = finished_build(client, build_id)
    assert build["state"] == "failed"
    # The session's worker builds with BuildKit, the default (both wordings: test_build_resource_limits.py)
    assert build["error"] == ("docker build failed: step [4/4] RUN exit 3: executor failed running "
                              "[/bin/sh -c exit 3]: exit code: 3")
    assert "ERROR: executor failed running [/bin/sh -c exit 3]: exit code: 3" in log_text(client, build_id)
    assert build["digest"] is None
    assert registry.tags(trigger["image"]) == []


def test_unknown_dockerfile_instruction_fails_with_the_parse_error(client, worker, registry, project):
    repo, trigger = project
    sha = repo.commit({"Dockerfile": "FROM scratch\nNOTANINSTRUCTION foo\n"}, "typo")
    build = finished_build(client, push(client, trigger, "refs/heads/main", sha).json["builds"][0])
    assert build["state"] == "failed"
    assert "unknown instruction" in build["error"].lower()


def test_a_dockerignore_symlink_out_of_the_repository_fails_the_build_at_once(client, worker, registry, project):
    repo, trigger = project
    os.symlink("/etc/hostname", repo.path / ".dockerignore")
    sha = repo.commit({}, "a .dockerignore that points at a host file")
    build = finished_build(client, push(client, trigger, "refs/heads/main", sha).json["builds"][0])
    assert build["state"] == "failed" and build["attempts"] == 1
    assert build["error"] == ".dockerignore path '.dockerignore' leads outside the repository"
    assert registry.tags(trigger["image"]) == []


def test_build_log_is_streamed_while_the_build_runs(client, worker, registry, project):
    repo, trigger = project
    slow = "RUN for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.5; done\n"
    # A unique marker, so the engine's layer cache cannot replay the slow step.
    sha = repo.commit({"Dockerfile": busybox_dockerfile(f"slow {uuid.uuid4()}", slow)}, "slow build")
    build_id = push(client, trigger, "refs/heads/main", sha).json["builds"][0]

    def running_with_log():
        build = client.get(f"/api/builds/{build_id}").json
        lines = client.get(f"/api/builds/{build_id}/log").json["lines"]
        return build["state"] == "building" and any("tick 2" in line["text"] for line in lines)

    wait_for(running_with_log, 60, "log lines to appear while the build is running", interval=0.1)
    assert finished_build(client, build_id)["state"] == "succeeded"
    seqs = [line["seq"] for line in client.get(f"/api/builds/{build_id}/log").json["lines"]]
    assert seqs == list(range(1, len(seqs) + 1))
    later = client.get(f"/api/builds/{build_id}/log?after={seqs[-3]}").json["lines"]
    assert [line["seq"] for line in later] == seqs[-2:]


def test_dockerfile_path_and_context_from_the_trigger_are_used(client, worker, registry, make_repo):
    suffix = uuid.uuid4().hex[:8]
    repo = make_repo(files={"docker/app.Dockerfile": busybox_dockerfile("custom path")})
    (repo.path / "busybox").rename(repo.path / "docker" / "busybox")
    sha = repo.commit({}, "move busybox into the context")
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": f"acme/custom-{suffix}", "clone_url": repo.url,
        "secret": SECRET, "image": f"acme/custom-{suffix}", "dockerfile": "docker/app.Dockerfile",
        "context": "docker",
    }).json
    build_id = push(client, trigger, "refs/heads/main", sha).json["builds"][0]
    build = finished_build(client, build_id)
    assert build["state"] == "succeeded", build["error"]
    assert "built custom path" in log_text(client, build_id)
