"""``buildhook run`` as a user runs it: the real console script, broker and worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from buildhook.redis_server import free_port
from tests.conftest import busybox_dockerfile, wait_for

BUILDHOOK = str(Path(sys.executable).with_name("buildhook"))


@pytest.fixture
def env(service_env) -> dict[str, str]:
    return {**os.environ, **service_env}


@pytest.fixture
def trigger(client, make_repo):
    suffix = uuid.uuid4().hex[:8]
    repo = make_repo()
    created = client.post("/api/triggers", json={
        "provider": "github", "repository": f"acme/cli-run-{suffix}", "clone_url": repo.url,
        "secret": "cli-run-secret", "image": f"acme/cli-run-{suffix}", "default_branch": "main",
    }).json
    return repo, created


def buildhook(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BUILDHOOK, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def finished_build(client, build_id, timeout=120):
    def done():
        build = client.get(f"/api/builds/{build_id}").json
        return build if build["state"] in ("succeeded", "failed") else None

    return wait_for(done, timeout, f"build {build_id} to finish", interval=0.25)


def test_run_a_branch_queues_a_build_the_worker_builds(client, worker, registry, trigger, env, settings,
                                                       tmp_path):
    repo, created = trigger
    sha = repo.commit({"Dockerfile": busybox_dockerfile(f"cli run {uuid.uuid4()}")}, "for the cli")
    result = buildhook(["run", str(created["id"]), "--branch", "main"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    [build] = client.get(f"/api/builds?trigger={created['id']}").json["builds"]
    assert f"Build {build['id']}: {settings.public_url}/builds/{build['id']}" in result.stdout
    assert sha[:7] in result.stdout and "broker is not reachable" not in result.stdout

    done = finished_build(client, build["id"])
    assert done["state"] == "succeeded", done["error"]
    assert done["commit"] == sha
    assert registry.digest(created["image"], "latest") == done["digest"]


def test_run_json_prints_the_builds_with_their_urls(client, trigger, env, settings, tmp_path):
    repo, created = trigger
    sha = repo.tag("v1.0.0")
    result = buildhook(["run", str(created["id"]), "--tag", "v1.0.0", "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    [build] = shown["builds"]
    assert (build["ref"], build["commit"], build["tags"]) == ("refs/tags/v1.0.0", sha, ["v1.0.0"])
    assert (build["origin"], build["started_by"].split(":")[0]) == ("manual", "cli")  # "manual run by cli:<user>"
    assert build["url"] == f"{settings.public_url}/builds/{build['id']}"
    assert shown["undispatched"] == []


def test_run_with_the_broker_down_keeps_the_build_queued_for_the_relay(client, worker, registry, trigger,
                                                                       env, tmp_path):
    _repo, created = trigger
    down = {**env, "BUILDHOOK_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    result = buildhook(["run", str(created["id"]), "--branch", "main"], down, tmp_path)
    assert result.returncode == 0, result.stderr
    [build] = client.get(f"/api/builds?trigger={created['id']}").json["builds"]
    assert f"Build {build['id']}:" in result.stdout
    assert "broker is not reachable" in result.stdout and "stay queued" in result.stdout
    # The worker shares the database: its outbox relay sends the build on its own broker.
    assert finished_build(client, build["id"])["state"] == "succeeded"


@pytest.mark.parametrize("args, message", [
    (["run", "99999", "--branch", "main"], "trigger 99999 not found"),
    (["run", "{id}", "--branch", "no-such-branch"], "branch 'no-such-branch' not found"),
    (["run", "{id}", "--branch", "main", "--tag", "v1"], "give only one"),
    (["run", "{id}"], "name what to run"),
    (["run", "{id}", "--sha", "zzzzzzz"], "is not a commit id"),
])
def test_run_errors_exit_2_with_one_line(trigger, env, tmp_path, args, message):
    _repo, created = trigger
    result = buildhook([arg.replace("{id}", str(created["id"])) for arg in args], env, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
