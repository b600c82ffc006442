"""A worker killed with SIGKILL in the middle of a build, on real components.

These tests start their own ``buildhook worker`` processes (each in its own process group,
heartbeat TTL 3 s) on a database and a Redis database of their own, so no other test's
builds or messages reach them. A build is pushed, its worker's process group is killed while
the build's long ``RUN`` step runs, and a second worker is started. Its reaper notices the
missing heartbeats: the build is retried and succeeds, exactly once, or, on its last attempt,
fails saying that the worker stopped responding. Either way the dead attempt's step container
and work directory are gone.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
from docker.errors import NotFound
from sqlalchemy import update

from builder.builds.run import pipeline
from builder.db.engine import migrate
from builder.db.models import Build
from builder.settings import Settings
from tests.build_engines import step_output, step_processes
from tests.conftest import ROOT, admin_client, busybox_dockerfile, finished_build, log_text, wait_for
from tests.payloads import github_headers, github_push
from webhooks import create_app
from workers.celery_app import RUN_BUILD, send_build

SECRET = "killed-worker-secret"
TTL = 3


@pytest.fixture(scope="module")
def own_env(tmp_path_factory, registry, redis_server) -> dict[str, str]:
    """Settings of their own: a private SQLite database and Redis database 7 (no other test's messages)."""
    data = tmp_path_factory.mktemp("killed-worker")
    env = {
        "BUILDHOOK_DATA_DIR": str(data),
        "BUILDHOOK_DATABASE_URL": f"sqlite:///{data / 'buildhook.db'}",
        "BUILDHOOK_SECRET_KEY": "killed-worker-key-" + uuid.uuid4().hex,
        "BUILDHOOK_BROKER_URL": re.sub(r"/\d+$", "/7", redis_server.url),
        "BUILDHOOK_REGISTRY": registry.host,
        "BUILDHOOK_PUBLIC_URL": "http://buildhook.test",
        "BUILDHOOK_DISPATCH_GRACE": "1",
        "BUILDHOOK_HEARTBEAT_TTL": str(TTL),
        "BUILDHOOK_ALLOW_FILE_CLONES": "1",
    }
    migrate(env["BUILDHOOK_DATABASE_URL"])
    return env


@pytest.fixture(scope="module")
def own_app(own_env):
    return create_app(Settings.from_env(own_env))


@pytest.fixture(scope="module")
def own_client(own_app):
    return admin_client(own_app, "killer")


@pytest.fixture
def start_worker(own_env, tmp_path) -> Iterator[Callable[[str], tuple[subprocess.Popen[bytes], Path]]]:
    """Start ``buildhook worker`` processes, each the leader of its own process group."""
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> tuple[subprocess.Popen[bytes], Path]:
        log_path = tmp_path / f"{name}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "buildhook.cli", "worker", "--concurrency", "1", "--relay-interval", "0.5"],
            env={**os.environ, **own_env}, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT, cwd=ROOT,
            start_new_session=True,
        )
        started.append(process)
        wait_for(lambda: b" ready." in log_path.read_bytes() or process.poll() is not None, 60, f"{name} to start")
        if process.poll() is not None:
            pytest.fail(f"{name} exited:\n{log_path.read_text()}")
        return process, log_path

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in started:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def trigger(own_client, make_repo):
    repo = make_repo()
    suffix = uuid.uuid4().hex[:8]
    created = own_client.post("/api/triggers", json={
        "provider": "github", "repository": f"acme/killed-{suffix}", "clone_url": repo.url,
        "secret": SECRET, "image": f"acme/killed-{suffix}", "default_branch": "main",
    })
    assert created.status_code == 201, created.json
    return repo, created.json


def push(client, trigger: dict, sha: str) -> int:
    payload = github_push("push_branch", repository=trigger["repository"], ref="refs/heads/main", sha=sha,
                          clone_url=trigger["clone_url"])
    body = json.dumps(payload).encode()
    response = client.post("/hooks/github", data=body, headers=github_headers(body, SECRET))
    assert response.status_code == 202, response.json
    [build_id] = response.json["builds"]
    return build_id


def log_lines(client, build_id: int) -> list[str]:
    """The log's lines, stripped, as the steps printed them: the step's own output, not the line that names
    the step ("Step n/m : RUN ...", "#6 [4/4] RUN ...")."""
    return [line.strip() for line in step_output(log_text(client, build_id).splitlines())]


def step_containers(docker_client, marker: str) -> list[str | int]:
    """A classic step's container ids, and the host processes of any step (BuildKit's are no containers)."""
    return [c["Id"] for c in docker_client.api.containers(all=True) if marker in (c.get("Command") or "")] + \
        step_processes(marker)


def kill_mid_build(client, app, docker_client, process: subprocess.Popen[bytes], build_id: int,
                   marker: str) -> tuple[str, list[str], list[Path]]:
    """Wait until the build's slow step runs, then SIGKILL the worker's whole process group.

    Returns the worker the build recorded, the step's container and the attempt's work directories.
    """
    wait_for(lambda: f"{marker} sleeping" in log_lines(client, build_id), 60, "the slow step to run", interval=0.1)
    build = client.get(f"/api/builds/{build_id}").json
    assert build["state"] == "building" and build["attempts"] == 1
    containers = step_containers(docker_client, marker)
    assert len(containers) == 1, "the slow step runs in one container (classic) or process (BuildKit)"
    settings = app.extensions["buildhook"].settings
    work_dirs = list(settings.effective_work_dir.glob(f"build-{build_id}-1-*"))
    assert len(work_dirs) == 1 and (work_dirs[0] / "src" / "Dockerfile").is_file()
    with app.extensions["buildhook"].sessions() as session:
        worker = session.get(Build, build_id).worker
    assert worker and re.fullmatch(r".+:\d+", worker)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
    return worker, containers, work_dirs


def assert_dead_attempt_cleaned_up(docker_client, marker: str, containers: list[str], work_dirs: list[Path]) -> None:
    assert step_containers(docker_client, marker) == [], "the dead attempt's step container is gone"
    for container in (c for c in containers if isinstance(c, str)):
        with pytest.raises(NotFound):
            docker_client.api.inspect_container(container)
    for path in work_dirs:
        assert not path.exists(), f"the dead attempt's work directory {path} is gone"


def test_a_build_whose_worker_is_killed_is_retried_by_another_worker_and_succeeds_once(
    own_client, own_app, own_env, trigger, start_worker, docker_client, registry
):
    repo, trig = trigger
    first, _first_log = start_worker("victim")
    marker = f"killed-{uuid.uuid4().hex}"
    # The slow step sleeps only until `deadline`: the first attempt runs into it, the retry does not.
    deadline = int(time.time()) + 10
    slow = (f"RUN echo {marker} sleeping; "
            f"if [ $(date +%s) -lt {deadline} ]; then sleep 60; fi; echo {marker} done\n")
    sha = repo.commit({"Dockerfile": busybox_dockerfile(marker, slow)}, "slow step")
    build_id = push(own_client, trig, sha)
    worker, containers, work_dirs = kill_mid_build(own_client, own_app, docker_client, first, build_id, marker)
    killed = time.monotonic()

    # A copy of the build's message, as the broker may redeliver one (acks_late): it must do no harm.
    send_build(own_app.extensions["celery"], build_id)
    time.sleep(max(0.0, deadline + 1 - time.time()))
    _second, second_log = start_worker("survivor")

    build = finished_build(own_client, build_id, timeout=60)
    took = time.monotonic() - killed
    log = log_text(own_client, build_id)
    assert build["state"] == "succeeded", log
    assert took < 45
    assert build["attempts"] == 2
    assert f"Worker {worker} stopped responding (no heartbeat for " in log
    assert "attempt 1 is abandoned and the build is retried" in log
    assert log.count(f"Build {build_id} (attempt 1)") == 1 and log.count(f"Build {build_id} (attempt 2)") == 1
    assert log.count("Succeeded: ") == 1, "exactly one successful run"
    assert log_lines(own_client, build_id).count(f"{marker} done") == 1, "the slow step completed once, in the retry"
    assert registry.tags(trig["image"]) == sorted(build["tags"])
    assert registry.digest(trig["image"], "main") == build["digest"]
    assert_dead_attempt_cleaned_up(docker_client, marker, containers, work_dirs)
    assert list(own_app.extensions["buildhook"].settings.effective_work_dir.glob(f"build-{build_id}-*")) == []

    # A message delivered late, after the build finished, claims nothing. (How many messages came
    # before it depends on a race that either way ends in one success: the copy sent above is taken
    # either before the reaper requeues the build (it claims nothing; the relay sends the requeued
    # build) or after (it runs the retry itself, and the relay finds nothing queued to send).)
    late = own_app.extensions["celery"].send_task(RUN_BUILD, args=[build_id]).id
    try:
        text = wait_for(lambda: (t := second_log.read_text()).count(f"run_build[{late}] succeeded") and t, 60,
                        "the survivor to take the late message")
    except AssertionError as missing:
        raise AssertionError(f"{missing}; the survivor's log ends:\n{second_log.read_text()[-3000:]}") from None
    assert re.search(rf"run_build\[{late}\] succeeded in [\d.]+s: 'not_claimed'", text), text[-3000:]
    outcomes = re.findall(r"Task buildhook\.run_build\[[^\]]+\] succeeded in [\d.]+s: '(\w+)'", text)
    assert outcomes.count("succeeded") == 1 and set(outcomes) == {"succeeded", "not_claimed"}, text[-3000:]
    again = own_client.get(f"/api/builds/{build_id}").json
    assert again["state"] == "succeeded" and again["attempts"] == 2 and again["digest"] == build["digest"]


def test_a_build_whose_worker_is_killed_on_its_last_attempt_fails_with_the_reason(
    own_client, own_app, trigger, start_worker, docker_client, registry
):
    repo, trig = trigger
    first, _log = start_worker("victim")
    marker = f"killed-last-{uuid.uuid4().hex}"
    sha = repo.commit({"Dockerfile": busybox_dockerfile(marker, f"RUN echo {marker} sleeping; sleep 60; echo {marker} woke\n")},
                      "slow step")
    build_id = push(own_client, trig, sha)
    worker, containers, work_dirs = kill_mid_build(own_client, own_app, docker_client, first, build_id, marker)
    killed = time.monotonic()
    with own_app.extensions["buildhook"].sessions() as session:  # as if this had been its last attempt
        session.execute(update(Build).where(Build.id == build_id).values(attempts=pipeline.MAX_ATTEMPTS))
        session.commit()
    start_worker("reaper")

    build = finished_build(own_client, build_id, timeout=30)
    took = time.monotonic() - killed
    log = log_text(own_client, build_id)
    assert build["state"] == "failed", log
    assert re.fullmatch(rf"worker {re.escape(worker)} stopped responding \(no heartbeat for \d+ s\); "
                        rf"gave up after {pipeline.MAX_ATTEMPTS} attempts", build["error"]), build["error"]
    assert log.splitlines()[-1] == f"FAILED: {build['error']}"
    assert took < 25
    assert_dead_attempt_cleaned_up(docker_client, marker, containers, work_dirs)
    time.sleep(1.5)  # a few relay passes: a failed build is never retried
    again = own_client.get(f"/api/builds/{build_id}").json
    assert again["state"] == "failed" and again["attempts"] == pipeline.MAX_ATTEMPTS
    assert registry.tags(trig["image"]) == []
