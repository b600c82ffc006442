"""Pull and merge requests end to end: each host's real payloads, git repositories whose request heads
exist only under the request refs (``git update-ref refs/pull/7/head``), the worker, the engine, the
registry. The Git host's status API is the local fake (tests/fake_git_host.py)."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import busybox_dockerfile, finished_build, git, log_text, wait_for
from tests.pull_request_payloads import HOSTS, REQUEST_REFS, request_delivery

SECRET = "pull-requests-e2e-secret"
ENDPOINTS = {"github": "github", "gitlab": "gitlab", "bitbucket-cloud": "bitbucket", "bitbucket-server": "bitbucket",
             "gitea": "gitea"}


def add_trigger(client, host, clone_url, rules, **extra):
    name = f"acme/pr-{uuid.uuid4().hex[:8]}"
    response = client.post("/api/triggers", json={
        "provider": HOSTS[host][0], "repository": name, "clone_url": clone_url, "secret": SECRET, "image": name,
        "rules": rules, **extra})
    assert response.status_code == 201, response.json
    return response.json


def request_head(repo, host, number, head, files, message="proposed change"):
    """A commit on ``head`` (off main), then only under the host's request ref: the branch is deleted,
    as a fork's branch is not in the base repository (Bitbucket Cloud keeps the branch: it has no refs)."""
    git(repo.path, "checkout", "-q", "-B", head, "main")
    sha = repo.commit(files, message)
    git(repo.path, "checkout", "-q", "main")
    if host != "bitbucket-cloud":
        git(repo.path, "update-ref", REQUEST_REFS[host].format(n=number), sha)
        git(repo.path, "branch", "-q", "-D", head)
    return sha


def send(client, host, trigger, **fields):
    body, headers = request_delivery(host, SECRET, repository=trigger["repository"], **fields)
    response = client.post(f"/hooks/{ENDPOINTS[host]}", data=body, headers=headers)
    assert response.status_code == 202, response.json
    return response.json


@pytest.mark.parametrize("host", list(HOSTS))
def test_each_hosts_request_builds_its_head_from_the_request_ref_without_pushing(client, worker, registry,
                                                                                 make_repo, host):
    repo = make_repo(dockerfile=busybox_dockerfile(f"pr {uuid.uuid4()}"))
    trigger = add_trigger(client, host, repo.url, [{"source": "pull_request", "pattern": "main"}])
    sha = request_head(repo, host, 7, "feature/login", {"login.txt": "v1"})
    answer = send(client, host, trigger, number=7, sha=sha, head="feature/login")
    assert answer["outcome"] == "accepted", answer
    build = finished_build(client, answer["builds"][0])
    assert build["state"] == "succeeded", build["error"]
    assert (build["pull_request"], build["ref_type"], build["ref_name"], build["base_branch"]) == (
        7, "pull_request", "feature/login", "main")
    assert build["ref"] == REQUEST_REFS[host].format(n=7, head="feature/login")
    assert build["commit"] == sha  # Bitbucket Cloud's 12 hex digits resolved once fetched
    assert (build["push"], build["digest"], build["tags"]) == (False, None, ["pr-7"])
    assert registry.tags(trigger["image"]) == []
    assert 'Not pushed: the rule builds requests with "push": false' in log_text(client, build["id"])
    listed = client.get(f"/api/builds?pull_request=7&trigger={trigger['id']}").json["builds"]
    assert [b["id"] for b in listed] == [build["id"]]


def test_closed_and_labelled_requests_and_other_base_branches_are_recorded_and_ignored(app, client, make_repo):
    trigger = add_trigger(client, "github", "file:///x.git", [{"source": "pull_request", "pattern": "main"}])
    sha = "a" * 40
    closed = send(client, "github", trigger, number=3, sha=sha, head="x", action="closed")
    labelled = send(client, "github", trigger, number=3, sha=sha, head="x", action="labeled")
    elsewhere = send(client, "github", trigger, number=3, sha=sha, head="x", base="release")
    assert closed["reason"] == ("pull request #3 'closed': recorded, not built (built: opened, synchronize, "
                                "reopened)")
    assert "'labeled': recorded, not built" in labelled["reason"]
    assert elsewhere["outcome"] == "ignored"
    assert "pull request #3 ('x' into 'release'): no rule of trigger" in elsewhere["reason"]
    deliveries = client.get(f"/api/triggers/{trigger['id']}/deliveries").json["deliveries"]
    assert [d["outcome"] for d in deliveries] == ["ignored", "ignored", "ignored"]


@pytest.mark.parametrize("rule, message", [
    ({"source": "pull_request", "push": True, "tags": ["latest"]}, "cannot tag 'latest'"),
    ({"source": "pull_request", "push": True, "tags": ["{branch}"]}, "cannot be rendered for pull_request"),
    ({"source": "pull_request", "push": True, "tags": ["{short_sha}"]}, "needs {pr} in every tag"),
    ({"source": "branch", "forks": "trusted"}, "applies to pull_request rules only"),
])
def test_request_rules_that_could_overwrite_a_branchs_tags_are_refused_at_creation(client, rule, message):
    response = client.post("/api/triggers", json={
        "provider": "github", "repository": "acme/refused", "clone_url": "file:///x.git", "secret": "s",
        "image": "acme/refused", "rules": [rule]})
    assert response.status_code == 400
    assert message in response.json["error"]


def test_a_pushing_request_rule_pushes_pr_tags_and_reports_on_the_head_commit(client, worker, registry, make_repo,
                                                                             host, settings):
    repo = make_repo(dockerfile=busybox_dockerfile(f"pr push {uuid.uuid4()}"))
    trigger = add_trigger(client, "github", repo.url,
                          [{"source": "pull_request", "push": True, "tags": ["pr-{pr}", "pr-{pr}-{short_sha}"]}],
                          api_url=f"{host.url}/api/v3", status_token="ghp_prstatus")
    sha = request_head(repo, "github", 12, "fix", {"fix.txt": "1"})
    build = finished_build(client, send(client, "github", trigger, number=12, sha=sha, head="fix")["builds"][0])
    assert build["state"] == "succeeded", build["error"]
    assert registry.tags(trigger["image"]) == sorted(["pr-12", f"pr-12-{sha[:7]}"])
    assert registry.digest(trigger["image"], "pr-12") == build["digest"]
    path = f"/api/v3/repos/{trigger['repository']}/statuses/{sha}"
    wait_for(lambda: any(r.path == path and r.json["state"] == "success" for r in host.posts()), 30,
             "a success status on the request's head commit")


FORK_DOCKERFILE = busybox_dockerfile("fork", 'ARG NPM_TOKEN\nRUN echo "token=[$NPM_TOKEN]" > /token\n')


@pytest.mark.parametrize("forks", ["untrusted", "trusted"])
def test_a_forks_request_gets_no_secret_build_args_and_no_push_unless_the_rule_trusts_forks(
        client, worker, registry, make_repo, docker_client, forks):
    repo = make_repo(dockerfile=FORK_DOCKERFILE.replace("fork", f"fork {uuid.uuid4()}"))
    token = f"npm_{uuid.uuid4().hex}"
    trigger = add_trigger(client, "github", repo.url, [{
        "source": "pull_request", "push": True, "forks": forks, "secret_build_args": {"NPM_TOKEN": token}}])
    sha = request_head(repo, "github", 5, "patch", {"patch.txt": "1"})
    answer = send(client, "github", trigger, number=5, sha=sha, head="patch", fork=True)
    build = finished_build(client, answer["builds"][0])
    assert build["state"] == "succeeded", build["error"]
    image = docker_client.images.get(f"{build['image']}:pr-5")
    container = docker_client.containers.create(image.id, ["/bin/cat", "/token"], network_mode="none")
    try:
        container.start()
        container.wait(timeout=30)
        written = container.logs().decode().strip()
    finally:
        container.remove(force=True)
    assert token not in log_text(client, build["id"])
    if forks == "untrusted":
        assert "a fork the rule does not trust" in answer["reason"]
        assert (build["fork"], build["push"], written) == ("untrusted", False, "token=[]")
        rebuilt = client.post(f"/api/builds/{build['id']}/rebuild")
        assert rebuilt.status_code == 201, rebuilt.json
        rebuilt = finished_build(client, rebuilt.json["build"]["id"])
        assert (rebuilt["state"], rebuilt["pull_request"], rebuilt["fork"], rebuilt["push"]) == (
            "succeeded", 5, "untrusted", False), "a rebuild of a fork's request is still one"
        assert registry.tags(trigger["image"]) == []
    else:
        assert (build["fork"], build["push"], written) == ("trusted", True, f"token=[{token}]")
        assert registry.tags(trigger["image"]) == ["pr-5"]


SLOW_DOCKERFILE = busybox_dockerfile("slow", "RUN sleep 6\n")


def test_a_newer_commit_cancels_the_running_build_when_the_rule_says_cancel_running(client, worker, registry,
                                                                                     make_repo):
    repo = make_repo(dockerfile=SLOW_DOCKERFILE.replace("slow", f"slow {uuid.uuid4()}"))
    trigger = add_trigger(client, "github", repo.url, [{"source": "pull_request", "cancel_running": True}])
    first = request_head(repo, "github", 9, "wip", {"a.txt": "1"})
    [first_id] = send(client, "github", trigger, number=9, sha=first, head="wip")["builds"]
    wait_for(lambda: client.get(f"/api/builds/{first_id}").json["state"] == "building", 60, "the first build to run")
    git(repo.path, "checkout", "-q", "-B", "wip", first)
    second = repo.commit({"a.txt": "2"}, "second")
    git(repo.path, "checkout", "-q", "main")
    git(repo.path, "update-ref", "refs/pull/9/head", second)
    [second_id] = send(client, "github", trigger, number=9, sha=second, head="wip", before=first)["builds"]
    cancelled = wait_for(lambda: (b := client.get(f"/api/builds/{first_id}").json)["state"] == "cancelled" and b,
                         60, "the running build to be cancelled")
    assert cancelled["reason"] == f"cancelled: superseded by a newer push of {second[:7]}"
    assert finished_build(client, second_id)["state"] == "succeeded"


@pytest.mark.parametrize("host", ["bitbucket-cloud", "github"])
def test_an_older_commit_whose_webhook_comes_later_is_superseded_by_the_commit_graph(client, worker, registry,
                                                                                      make_repo, host):
    repo = make_repo(dockerfile=busybox_dockerfile(f"order {uuid.uuid4()}"))
    trigger = add_trigger(client, host, repo.url, [{"source": "pull_request"}])
    older = request_head(repo, host, 4, "topic", {"a.txt": "1"})
    git(repo.path, "checkout", "-q", "-B", "topic", older)
    newer = repo.commit({"a.txt": "2"}, "newer")
    git(repo.path, "checkout", "-q", "main")
    if host == "github":
        git(repo.path, "update-ref", "refs/pull/4/head", newer)
        git(repo.path, "branch", "-q", "-D", "topic")
    # Neither payload names a previous head (Bitbucket Cloud never does; two "opened" deliveries here):
    # only the commit graph can order the two.
    [newer_id] = send(client, host, trigger, number=4, sha=newer, head="topic")["builds"]
    assert finished_build(client, newer_id)["state"] == "succeeded"
    [older_id] = send(client, host, trigger, number=4, sha=older, head="topic")["builds"]
    late = finished_build(client, older_id)
    assert late["state"] == "superseded"
    assert late["reason"] == f"superseded: commit {older[:7]} is older than {newer[:7]} (build #{newer_id})"
    assert f"Commit order against build #{newer_id} ({newer[:7]}), by the commit graph: older" in log_text(
        client, older_id)


def test_an_older_commit_redelivered_after_a_newer_one_is_superseded_at_once_by_the_payloads(client, app):
    trigger = add_trigger(client, "gitlab", "file:///x.git", [{"source": "pull_request"}])
    older, newer = "1" * 40, "2" * 40
    send(client, "gitlab", trigger, number=2, sha=newer, head="b", before=older)
    late = send(client, "gitlab", trigger, number=2, sha=older, head="b")
    [build] = [client.get(f"/api/builds/{i}").json for i in late["builds"]]
    assert build["state"] == "superseded"
    assert build["reason"].startswith(f"superseded: commit {older[:7]} is older than {newer[:7]}")
