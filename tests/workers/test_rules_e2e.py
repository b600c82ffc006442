"""Build rules, path filters, layer cache, private repositories and commit statuses, end to end.

Real worker, real engine, real registry, real git servers; the Git host's status
API is the local fake in tests/fake_git_host.py (the one thing not run for real).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import datetime

import pytest
from docker.errors import ImageNotFound

from tests.builder.builds.test_scheduled_base_pull import base_image
from tests.conftest import busybox_dockerfile, finished_build, log_text, wait_for
from tests.git_http_server import TOKEN
from tests.payloads import github_headers, github_push

SECRET = "rules-e2e-secret"


def add_trigger(client, clone_url, **extra):
    name = f"acme/e2e-{uuid.uuid4().hex[:8]}"
    response = client.post("/api/triggers", json={
        "provider": "github", "repository": name, "clone_url": clone_url, "secret": SECRET, "image": name,
        **extra})
    assert response.status_code == 201, response.json
    return response.json


def push(client, trigger, ref, sha, before=None, fixture="push_branch"):
    payload = github_push(fixture, repository=trigger["repository"], ref=ref, sha=sha,
                          clone_url=trigger["clone_url"])
    if before:
        payload["before"] = before
        payload["created"] = True  # so the payload's file list does not count: the worker computes it
    body = json.dumps(payload).encode()
    response = client.post("/hooks/github", data=body, headers=github_headers(body, SECRET))
    assert response.status_code == 202, response.json
    return response.json["builds"]


def test_build_args_target_and_oci_labels_reach_the_image(client, worker, registry, make_repo, docker_client):
    dockerfile = (
        "FROM scratch AS base\nCOPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        "FROM base AS release\nARG FLAVOUR=plain\nRUN echo \"flavour=$FLAVOUR\" > /flavour\n"
        f"RUN echo {uuid.uuid4()}\n"
        "FROM release AS never\nRUN exit 1\n"
    )
    repo = make_repo(dockerfile=dockerfile)
    trigger = add_trigger(client, repo.url, rules=[{"source": "tag", "pattern": "v*",
                                                    "tags": ["{version}"], "target": "release",
                                                    "build_args": {"FLAVOUR": "spicy"}}])
    sha = repo.tag("v3.1.4")
    [build_id] = push(client, trigger, "refs/tags/v3.1.4", sha, fixture="push_tag")
    build = finished_build(client, build_id)
    assert build["state"] == "succeeded", build["error"]
    assert registry.tags(trigger["image"]) == ["3.1.4"]
    image = docker_client.images.get(f"{build['image']}:3.1.4")
    labels = image.labels
    assert labels["org.opencontainers.image.revision"] == sha
    assert labels["org.opencontainers.image.source"] == repo.url
    assert labels["org.opencontainers.image.ref.name"] == "v3.1.4"
    assert labels["org.opencontainers.image.version"] == "v3.1.4"
    committed = subprocess.run(["git", "show", "-s", "--format=%cI", sha], cwd=repo.path, check=True,
                               capture_output=True, text=True).stdout.strip()
    assert datetime.fromisoformat(labels["org.opencontainers.image.created"]) == datetime.fromisoformat(committed)
    container = docker_client.containers.create(image.id, ["/bin/cat", "/flavour"], network_mode="none")
    try:
        container.start()
        container.wait(timeout=30)
        assert container.logs().decode().strip() == "flavour=spicy"
    finally:
        container.remove(force=True)


def test_an_unchanged_rebuild_takes_its_layers_from_the_cache(client, worker, registry, make_repo):
    repo = make_repo(dockerfile=busybox_dockerfile(f"cache {uuid.uuid4()}"))
    trigger = add_trigger(client, repo.url, supersede=False)
    sha = repo.commit({"a.txt": "1"})
    first = finished_build(client, push(client, trigger, "refs/heads/main", sha)[0])
    second_id = push(client, trigger, "refs/heads/main", sha)[0]
    second = finished_build(client, second_id)
    assert (first["state"], second["state"]) == ("succeeded", "succeeded")
    log = log_text(client, second_id)
    assert f"(build {first['id']}) as the layer cache" in log
    steps_line = next(line for line in log.splitlines() if line.startswith("Layer cache:"))
    hits, steps = map(int, steps_line.removeprefix("Layer cache: ").removesuffix(" steps from cache").split(" of "))
    assert hits >= 3, steps_line  # COPY busybox, RUN --install, RUN echo: only the labels change
    # Reproducible: the labels come from the commit (created is the commit's time), so the same commit
    # rebuilt from a warm cache is the same image, to the digest.
    assert second["digest"] == first["digest"]


def test_a_rebuild_of_an_older_commit_pushes_that_commit_s_digest_again(client, worker, registry, make_repo):
    """The rule pushed a newer commit since: the rebuild is compared with, and cached from, its own
    commit's image, not the rule's last one, so it is that image again."""
    repo = make_repo(dockerfile=busybox_dockerfile(f"older {uuid.uuid4()}"))
    trigger = add_trigger(client, repo.url, supersede=False)
    older = repo.commit({"a.txt": "1"})
    first = finished_build(client, push(client, trigger, "refs/heads/main", older)[0])
    newer = repo.commit({"a.txt": "2"})
    between = finished_build(client, push(client, trigger, "refs/heads/main", newer, before=older)[0])
    rebuilt = client.post(f"/api/builds/{first['id']}/rebuild")
    assert rebuilt.status_code == 201, rebuilt.json
    again_id = rebuilt.json["build"]["id"]
    again = finished_build(client, again_id)
    assert (first["state"], between["state"], again["state"]) == ("succeeded",) * 3
    assert between["digest"] != first["digest"]
    log = log_text(client, again_id)
    assert f"(build {first['id']}) as the layer cache" in log
    assert f"Unchanged since build {first['id']}" in log
    assert again["digest"] == first["digest"], log


def test_a_rebuild_of_an_older_commit_on_a_fixed_base_is_a_new_image_and_leaves_no_pulled_copy(
        client, worker, registry, make_repo, docker_client, tmp_path):
    base = f"{registry.host}/acme/base-{uuid.uuid4().hex[:8]}:latest"
    base_image(docker_client, tmp_path / "v1", base, "v1")
    docker_client.images.push(base.rsplit(":", 1)[0], tag="latest")
    repo = make_repo(dockerfile=f"FROM {base}\nRUN [\"/bin/busybox\", \"true\"]\n")
    trigger = add_trigger(client, repo.url, supersede=False)
    older = repo.commit({"a.txt": "1"})
    first = finished_build(client, push(client, trigger, "refs/heads/main", older)[0])
    newer = repo.commit({"a.txt": "2"})
    between = finished_build(client, push(client, trigger, "refs/heads/main", newer, before=older)[0])
    base_image(docker_client, tmp_path / "v2", base, "v2")  # the base's fix
    docker_client.images.push(base.rsplit(":", 1)[0], tag="latest")

    rebuilt = client.post(f"/api/builds/{first['id']}/rebuild")
    assert rebuilt.status_code == 201, rebuilt.json
    again = finished_build(client, rebuilt.json["build"]["id"])
    assert (first["state"], between["state"], again["state"]) == ("succeeded",) * 3
    assert again["digest"] not in (first["digest"], between["digest"])
    assert "Unchanged since" not in log_text(client, again["id"])
    # the older commit's image, pulled back only to be compared, is not left on the engine
    with pytest.raises(ImageNotFound):
        docker_client.images.get(f"{first['image']}@{first['digest']}")


def test_path_filters_are_computed_in_the_clone_when_the_payload_cannot_tell(client, worker, registry, make_repo):
    repo = make_repo()
    trigger = add_trigger(client, repo.url, rules=[{"source": "branch", "tags": ["{branch}"],
                                                    "ignored_files": ["docs/**", "*.md"]}])
    base = repo.commit({"src/app.txt": "v1"}, "code")
    docs_only = repo.commit({"docs/guide.txt": "hello", "README.md": "readme"}, "docs only")
    skipped = finished_build(client, push(client, trigger, "refs/heads/main", docs_only, before=base)[0])
    assert skipped["state"] == "skipped"
    assert skipped["reason"] == "every changed file matches the ignored files"
    assert registry.tags(trigger["image"]) == []

    code = repo.commit({"src/app.txt": "v2"}, "code change")
    built = finished_build(client, push(client, trigger, "refs/heads/main", code, before=docs_only)[0])
    assert built["state"] == "succeeded"
    assert "Changed files: src/app.txt" in log_text(client, built["id"])


def test_a_private_repository_is_cloned_over_https_with_the_triggers_token(
    client, worker, registry, make_repo, git_http
):
    repo = make_repo()
    sha = repo.commit({"private.txt": "secret sauce"}, "private commit")
    trigger = add_trigger(client, git_http.url("repo"), clone_token=TOKEN, clone_username="oauth2")
    assert trigger["clone_auth"] == "token" and TOKEN not in json.dumps(trigger)
    build_id = push(client, trigger, "refs/heads/main", sha)[0]
    build = finished_build(client, build_id)
    assert build["state"] == "succeeded", build["error"]
    assert registry.digest(trigger["image"], "main") == build["digest"]
    assert TOKEN not in log_text(client, build_id)
    assert "oauth2" in git_http.users


def test_a_private_repository_without_the_token_fails_with_an_authentication_error(
    client, worker, registry, make_repo, git_http
):
    repo = make_repo()
    sha = repo.commit({"x": "y"})
    trigger = add_trigger(client, git_http.url("repo"))
    build = finished_build(client, push(client, trigger, "refs/heads/main", sha)[0])
    assert build["state"] == "failed"
    assert "authentication failed" in build["error"]


def test_each_build_reports_pending_running_and_success_to_the_commit(client, worker, registry, make_repo,
                                                                      host, settings):
    repo = make_repo()
    sha = repo.commit({"x": "1"})
    trigger = add_trigger(client, repo.url, api_url=f"{host.url}/api/v3", status_token="ghp_statustoken123")
    assert trigger["commit_status"] is True and "ghp_statustoken123" not in json.dumps(trigger)
    build_id = push(client, trigger, "refs/heads/main", sha)[0]
    assert finished_build(client, build_id)["state"] == "succeeded"
    path = f"/api/v3/repos/{trigger['repository']}/statuses/{sha}"

    def three_posts():
        posts = [r for r in host.posts() if r.path == path]
        return posts if len(posts) >= 3 else None

    posts = wait_for(three_posts, 30, "three commit statuses")
    assert sorted(p.json["state"] for p in posts) == ["pending", "pending", "success"]
    for post in posts:
        assert post.json["context"] == "buildhook"
        assert post.json["target_url"] == f"{settings.public_url}/builds/{build_id}"
        assert post.headers["Authorization"] == "token ghp_statustoken123"


def test_a_failed_build_reports_failure_and_a_failing_status_api_never_fails_a_build(
    client, worker, registry, make_repo, host
):
    repo = make_repo()
    broken = repo.commit({"Dockerfile": "FROM scratch\nRUN exit 1\n"}, "broken")
    trigger = add_trigger(client, repo.url, api_url=f"{host.url}/api/v3", status_token="ghp_x")
    build = finished_build(client, push(client, trigger, "refs/heads/main", broken)[0])
    assert build["state"] == "failed"
    wait_for(lambda: any(r.json and r.json.get("state") == "failure" for r in host.posts()), 30,
             "a failure status")

    host.fail(500, times=100)
    good = repo.commit({"Dockerfile": busybox_dockerfile(str(uuid.uuid4()))}, "fixed")
    assert finished_build(client, push(client, trigger, "refs/heads/main", good)[0])["state"] == "succeeded"
