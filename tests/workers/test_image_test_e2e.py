"""A rule's test gates the tags: pushed by digest, tested in that digest, tagged only on exit 0.

Real worker, engine, registries (one notifying the running ``buildhook web``) and a deploy
receiver: what a user sees is the build's state, error and log, the registry's tags, and
whether anything deployed.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.conftest import busybox_dockerfile, finished_build, log_text, wait_for
from tests.payloads import github_headers, github_push

SECRET = "image-test-e2e-secret"


@pytest.fixture
def tested_project(client, make_repo, notifying_registry, worker, receiver):
    """A trigger whose rule has ``test``, and a staging deploy rule for its image, through a webhook."""
    def make(test: dict):
        name = f"acme/tested-{uuid.uuid4().hex[:8]}"
        repo = make_repo()
        trigger = client.post("/api/triggers", json={
            "provider": "github", "repository": name, "clone_url": repo.url, "secret": SECRET,
            "image": f"{notifying_registry.host}/{name}",
            "rules": [{"source": "branch", "tags": ["{branch}", "{short_sha}"], "test": test}]})
        assert trigger.status_code == 201, trigger.json
        assert trigger.json["rules"][0]["test"]["command"] == test["command"]
        rule = client.post("/api/deploy-rules", json={
            "repository": name, "tag": "main", "environment": "staging", "registry": notifying_registry.host,
            "targets": [{"kind": "webhook", "url": f"{receiver.url}/deploy"}]})
        assert rule.status_code == 201, rule.json
        return repo, trigger.json, name
    return make


def push_and_wait(client, repo, trigger):
    sha = repo.commit({"Dockerfile": busybox_dockerfile(uuid.uuid4().hex)}, "test me")
    payload = github_push("push_branch", repository=trigger["repository"], ref="refs/heads/main", sha=sha,
                          clone_url=repo.url)
    body = json.dumps(payload).encode()
    response = client.post("/hooks/github", data=body, headers=github_headers(body, SECRET))
    return finished_build(client, response.json["builds"][0])


def events_of(client, name):
    return [e for e in client.get("/api/registry-events?limit=500").json["registry_events"] if e["repository"] == name]


def test_a_passing_test_runs_in_the_pushed_digest_without_network_and_then_the_tags_move(
        client, tested_project, notifying_registry, receiver):
    command = ["sh", "-c", "echo in-the-image; ls /sys/class/net; cat /sys/fs/cgroup/memory/memory.limit_in_bytes"]
    repo, trigger, name = tested_project({"command": command, "timeout": 60})
    build = push_and_wait(client, repo, trigger)
    assert build["state"] == "succeeded", build["error"]
    log = log_text(client, build["id"])
    assert f"Testing {build['image']}@{build['digest']}" in log, "the test ran in exactly the digest that was tagged"
    assert "test: in-the-image" in log and "Test " in log and "passed (exit code 0)" in log
    net = [line for line in log.splitlines() if line.startswith("test: ") and line[6:] in ("lo", "eth0")]
    assert net == ["test: lo"], "network none: only loopback"
    assert f"test: {4 * 1024 ** 3}" in log, "the build's memory limit (BUILDHOOK_BUILD_MEMORY, 4g)"
    assert log.index("Testing ") < log.index("Tagged ")
    assert notifying_registry.tags(name) == sorted(["main", build["commit"][:7]])
    assert notifying_registry.digest(name, "main") == build["digest"]
    [delivered] = wait_for(lambda: receiver.posts("/deploy") or None, 60, "the staging deploy")
    assert json.loads(delivered.body)["data"]["digest"] == build["digest"]
    untagged = wait_for(lambda: [e for e in events_of(client, name) if e["tag"] is None] or None, 30,
                        "the registry's event of the push by digest")
    assert all(e["outcome"] == "ignored" for e in untagged)


def test_a_failing_test_fails_the_build_and_no_tag_moves_so_nothing_deploys(client, tested_project,
                                                                          notifying_registry, receiver):
    repo, trigger, name = tested_project({"command": ["sh", "-c", "echo checking; exit 3"]})
    build = push_and_wait(client, repo, trigger)
    assert build["state"] == "failed"
    assert build["error"] == "test \"sh -c 'echo checking; exit 3'\" failed with exit code 3: no tag was pushed"
    log = log_text(client, build["id"])
    assert "test: checking" in log and "Tagged " not in log
    assert notifying_registry.tags(name) == []
    wait_for(lambda: events_of(client, name) or None, 30, "the registry's event of the push by digest")
    time.sleep(1.5)  # the registry notifies within a second: nothing else comes
    assert all(e["tag"] is None and e["outcome"] == "ignored" for e in events_of(client, name))
    assert [d for d in client.get("/api/deployments").json["deployments"] if d["repository"] == name] == []
    assert receiver.posts("/deploy") == []


def test_a_test_past_its_timeout_is_killed_and_fails_the_build(client, tested_project, notifying_registry,
                                                              docker_client):
    repo, trigger, name = tested_project({"command": ["sleep", "60"], "timeout": 2})
    started = time.monotonic()
    build = push_and_wait(client, repo, trigger)
    assert build["state"] == "failed"
    assert build["error"] == "test 'sleep 60' timed out after 2 s: no tag was pushed"
    assert time.monotonic() - started < 50
    assert notifying_registry.tags(name) == []
    assert docker_client.containers.list(all=True, filters={"label": "buildhook.test"}) == []


def test_a_rule_test_that_is_not_a_command_list_is_refused(client):
    for test, message in (({"command": "make test"}, "non-empty list of strings"),
                          ({"command": ["true"], "timeout": 0}, "test timeout"),
                          ({"cmd": ["true"]}, "rule field 'test'")):
        response = client.post("/api/triggers", json={
            "provider": "github", "repository": "acme/refused", "clone_url": "https://example.com/a.git",
            "secret": "s", "image": "acme/refused", "rules": [{"source": "branch", "test": test}]})
        assert response.status_code == 400 and message in response.json["error"], response.json
