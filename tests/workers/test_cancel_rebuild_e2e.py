"""Cancel and rebuild, end to end on real components: the session's Celery worker, the Docker Engine, a registry.

A queued build is cancelled at once and never runs; a running build's worker notices the
request, stops the engine's build (its container goes), removes the work directory and
pushes nothing; a finished build cannot be cancelled; a rebuild builds the same commit
into the same tags again. Only admins may do either.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid

import pytest
from docker.errors import NotFound
from sqlalchemy import delete, update

from builder.builds.run import pipeline
from builder.accounts.users import add_user, create_token
from builder.builds.actions import cancel_build
from builder.builds.run.log import CancelCheck
from builder.builds.run.stops import BuildCancelled
from builder.errors import Conflict
from builder.builds.image.classic import remove_build_containers
from builder.builds.image.push import push_image
from builder.db.models import Build, BuildLogLine, BuildState, Trigger, utcnow
from tests.build_engines import step_processes
from tests.conftest import busybox_dockerfile, log_text, signed_in, wait_for
from tests.payloads import github_headers, github_push

SECRET = "cancel-webhook-secret"
ENDED = {"succeeded", "failed", "skipped", "superseded", "cancelled"}
TICKS = "for i in $(seq 1 60); do echo tick $i; sleep 0.5; done"


@pytest.fixture
def project(client, make_repo):
    """A repository with a trigger pointing at it."""
    suffix = uuid.uuid4().hex[:8]
    repo = make_repo()
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": f"acme/cancel-{suffix}", "clone_url": repo.url,
        "secret": SECRET, "image": f"acme/cancel-{suffix}", "default_branch": "main",
    }).json
    return repo, trigger


def push(client, trigger, sha: str) -> int:
    payload = github_push("push_branch", repository=trigger["repository"], ref="refs/heads/main", sha=sha,
                          clone_url=trigger["clone_url"])
    body = json.dumps(payload).encode()
    response = client.post("/hooks/github", data=body, headers=github_headers(body, SECRET))
    assert response.status_code == 202, response.json
    [build_id] = response.json["builds"]
    return build_id


def ended(client, build_id: int, timeout: float = 120) -> dict:
    def done():
        build = client.get(f"/api/builds/{build_id}").json
        return build if build["state"] in ENDED else None

    return wait_for(done, timeout, f"build {build_id} to end", interval=0.1)  # type: ignore[return-value]


def slow_commit(repo) -> tuple[str, str]:
    """A commit whose last step ticks for 30 s, marked so its container can be found (and no cache replays it)."""
    marker = f"cancel-{uuid.uuid4().hex}"
    sha = repo.commit({"Dockerfile": busybox_dockerfile(marker, f"RUN echo {marker}; {TICKS}\n")}, "slow build")
    return sha, marker


def step_containers(docker_client, marker: str) -> list[str | int]:
    """The build containers (any state) whose command carries ``marker``: the slow step's (classic), and
    the host processes that do (a BuildKit step's: no container)."""
    return [c["Id"] for c in docker_client.api.containers(all=True) if marker in (c.get("Command") or "")] + \
        step_processes(marker)


def queued_row(app, trigger_id: int, sha: str = "0" * 40) -> int:
    """A queued build no worker will take: marked dispatched now (so the relay leaves it), never sent."""
    with app.extensions["buildhook"].sessions() as session:
        trigger = session.get(Trigger, trigger_id)
        build = Build(
            trigger_id=trigger_id, rule_id=trigger.rules[0].id, provider="github", repository=trigger.repository,
            clone_url=trigger.clone_url, ref="refs/heads/main", ref_type="branch", ref_name="main", commit=sha,
            image=f"{app.extensions['buildhook'].settings.registry}/{trigger.image}", tags=["main"],
            dockerfile="Dockerfile", context=".", dispatched_at=utcnow(),
        )
        session.add(build)
        session.commit()
        return build.id


def test_a_queued_build_is_cancelled_at_once_and_never_runs(app, client, project, settings):
    _repo, trigger = project
    build_id = queued_row(app, trigger["id"])
    sessions = app.extensions["buildhook"].sessions
    with sessions() as session:
        build = cancel_build(session, build_id, by="alice")
        session.commit()
        assert build.state == BuildState.CANCELLED.value == "cancelled"
        assert BuildState(build.state).finished
        assert build.reason == "cancelled by alice" and build.finished_at is not None and build.error is None
    # The worker's claim only takes queued builds: its message, if it came, would start nothing.
    assert pipeline.run_build(sessions, settings, build_id) is pipeline.Outcome.NOT_CLAIMED
    shown = client.get(f"/api/builds/{build_id}").json
    assert shown["state"] == "cancelled" and shown["cancel_requested"] is True
    assert shown["attempts"] == 0 and shown["started_at"] is None
    with sessions() as session:
        assert session.query(BuildLogLine).filter_by(build_id=build_id).count() == 0
        with pytest.raises(Conflict, match=f"build {build_id} already finished"):
            cancel_build(session, build_id, by="alice")

    # The same through the API, as the signed-in admin.
    other = queued_row(app, trigger["id"])
    response = client.post(f"/api/builds/{other}/cancel")
    assert response.status_code == 202, response.json
    assert response.json["id"] == other and response.json["state"] == "cancelled"
    assert response.json["reason"] == "cancelled by test-admin" and response.json["finished_at"]
    again = client.post(f"/api/builds/{other}/cancel")
    assert again.status_code == 409 and "already finished" in again.json["error"]
    assert client.post("/api/builds/987654321/cancel").status_code == 404
    assert client.post("/api/builds/987654321/rebuild").status_code == 404


def test_a_build_whose_trigger_is_gone_cannot_be_rebuilt(app, client, project):
    _repo, trigger = project
    build_id = queued_row(app, trigger["id"])
    assert client.post(f"/api/builds/{build_id}/cancel").status_code == 202
    with app.extensions["buildhook"].sessions() as session:
        session.execute(delete(Trigger).where(Trigger.id == trigger["id"]))
        session.commit()
    response = client.post(f"/api/builds/{build_id}/rebuild")
    assert response.status_code == 409 and "trigger" in response.json["error"]


def test_a_viewer_can_neither_cancel_nor_rebuild(app, client, project):
    _repo, trigger = project
    build_id = queued_row(app, trigger["id"])
    with app.extensions["buildhook"].sessions() as session:
        viewer = add_user(session, f"viewer-{uuid.uuid4().hex[:6]}", "correct horse battery", "viewer")
        _row, token = create_token(session, viewer)
        session.commit()
    as_viewer = signed_in(app.test_client(), token)
    for action in ("cancel", "rebuild"):
        refused = as_viewer.post(f"/api/builds/{build_id}/{action}")
        assert refused.status_code == 403 and "admin" in refused.json["error"]
    assert as_viewer.get(f"/api/builds/{build_id}").json["state"] == "queued"
    assert len(client.get(f"/api/builds?trigger={trigger['id']}").json["builds"]) == 1
    assert client.post(f"/api/builds/{build_id}/cancel").json["state"] == "cancelled"


def test_cancelling_a_running_build_stops_its_docker_build_and_pushes_nothing(
    client, worker, registry, project, docker_client, settings
):
    repo, trigger = project
    sha, marker = slow_commit(repo)
    build_id = push(client, trigger, sha)
    wait_for(lambda: "tick 3" in log_text(client, build_id), 60, "the slow step to tick", interval=0.1)
    running = step_containers(docker_client, marker)
    assert len(running) == 1, "the slow step runs in one container (classic) or process (BuildKit)"

    response = client.post(f"/api/builds/{build_id}/cancel")
    asked = time.monotonic()
    assert response.status_code == 202, response.json
    assert response.json["state"] == "building" and response.json["cancel_requested"] is True
    build = ended(client, build_id, timeout=10)
    took = time.monotonic() - asked

    assert build["state"] == "cancelled", log_text(client, build_id)
    assert took < 10
    assert build["finished_at"] and build["error"] is None and build["digest"] is None
    assert build["reason"] == "cancelled by test-admin"
    log = log_text(client, build_id)
    assert log.splitlines()[-1] == "Cancelled by test-admin"
    assert "tick 20" not in log and "FAILED" not in log and "Pushing" not in log
    assert step_containers(docker_client, marker) == [], "the step's container (or process) is gone"
    if isinstance(running[0], str):
        with pytest.raises(Exception, match="No such container"):
            docker_client.api.inspect_container(running[0])
    assert list(settings.effective_work_dir.glob(f"build-{build_id}-*")) == [], "work directory removed"
    assert registry.tags(trigger["image"]) == []

    again = client.post(f"/api/builds/{build_id}/cancel")
    assert again.status_code == 409
    time.sleep(1.5)  # a cancelled build is never retried
    later = client.get(f"/api/builds/{build_id}").json
    assert later["state"] == "cancelled" and later["attempts"] == 1


def test_cancelling_right_after_the_push_ends_the_build_whichever_state_it_was_in(
    client, worker, registry, project, docker_client
):
    repo, trigger = project
    sha, marker = slow_commit(repo)
    build_id = push(client, trigger, sha)
    response = client.post(f"/api/builds/{build_id}/cancel")
    assert response.status_code == 202, response.json
    assert response.json["state"] != "queued"
    if response.json["state"] == "cancelled":  # no worker had claimed it yet
        assert response.json["finished_at"]
    else:  # a worker had: it stops it
        assert response.json["state"] in ("cloning", "building", "pushing")
        assert response.json["cancel_requested"] is True and response.json["finished_at"] is None
    build = ended(client, build_id, timeout=15)
    assert build["state"] == "cancelled" and build["reason"] == "cancelled by test-admin"
    assert "tick 10" not in log_text(client, build_id)
    assert registry.tags(trigger["image"]) == []
    wait_for(lambda: step_containers(docker_client, marker) == [], 5, "no container of the build")


def test_a_finished_build_cannot_be_cancelled_and_its_rebuild_pushes_the_same_tags(
    client, worker, registry, project
):
    repo, trigger = project
    sha = repo.commit({"README.md": "rebuild me\n"}, "Add a README")
    first = ended(client, push(client, trigger, sha))
    assert first["state"] == "succeeded", log_text(client, first["id"])
    refused = client.post(f"/api/builds/{first['id']}/cancel")
    assert refused.status_code == 409 and f"build {first['id']} already finished" in refused.json["error"]

    response = client.post(f"/api/builds/{first['id']}/rebuild")
    assert response.status_code == 201, response.json
    again = response.json["build"]
    assert again["id"] != first["id"] and again["state"] == "queued"
    for same in ("trigger", "rule", "commit", "ref", "image", "tags", "target"):
        assert again[same] == first[same], same
    assert again["digest"] is None and again["started_at"] is None and again["cancel_requested"] is False

    rebuilt = ended(client, again["id"])
    assert rebuilt["state"] == "succeeded", log_text(client, again["id"])
    assert f"Checked out {sha}" in log_text(client, again["id"])
    assert rebuilt["tags"] == ["main", sha[:7], "latest"]
    assert registry.tags(trigger["image"]) == sorted(rebuilt["tags"])
    for tag in rebuilt["tags"]:
        assert registry.digest(trigger["image"], tag) == rebuilt["digest"]


def test_a_cancel_request_stops_a_push_under_way_and_the_registry_gets_no_tag(
    app, project, docker_client, registry, tmp_path
):
    """The engine stops a push when its client goes: no manifest, so no tag, even seconds later."""
    _repo, trigger = project
    build_id = queued_row(app, trigger["id"])
    context = tmp_path / "big"
    context.mkdir()
    (context / "big.bin").write_bytes(os.urandom(64 * 2**20))  # a few seconds to push, even locally
    (context / "Dockerfile").write_text("FROM scratch\nCOPY big.bin /big.bin\n")
    repository = f"acme/push-cancel-{uuid.uuid4().hex[:8]}"
    name = f"{registry.host}/{repository}"
    docker_client.images.build(path=str(context), tag=f"{name}:one", rm=True)
    docker_client.api.tag(f"{name}:one", name, "two")
    sessions = app.extensions["buildhook"].sessions

    def ask() -> None:
        with sessions() as session:
            session.execute(update(Build).where(Build.id == build_id)
                            .values(cancel_requested_at=utcnow(), reason="cancelled by bob"))
            session.commit()

    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if line == f"Pushing {name}:one":
            threading.Timer(0.3, ask).start()

    started = time.monotonic()
    try:
        with CancelCheck(sessions, build_id, interval=0.1) as cancel:
            with pytest.raises(BuildCancelled, match="cancelled by bob"):
                push_image(docker_client, name, ["one", "two"], log, cancel=cancel)
        assert time.monotonic() - started < 2.5
        assert f"Pushing {name}:two" not in lines and not any("Pushed" in line for line in lines)
        time.sleep(4)  # long enough for the whole push, had the engine gone on
        assert registry.tags(repository) == []
    finally:
        docker_client.images.remove(f"{name}:two", force=True)
        docker_client.images.remove(f"{name}:one", force=True)


def test_a_build_container_the_engine_left_behind_is_removed(docker_client, tmp_path):
    context = tmp_path / "leftover"
    context.mkdir()
    shutil.copy("/bin/busybox", context / "busybox")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY busybox /bin/busybox\n")
    image, _logs = docker_client.images.build(path=str(context), rm=True)
    container = docker_client.containers.run(image.id, ["/bin/busybox", "sleep", "60"], detach=True,
                                             network_mode="none")
    try:
        lines: list[str] = []
        remove_build_containers(docker_client, [container.id[:12]], lines.append, grace=0.3)
        with pytest.raises(NotFound):
            docker_client.api.inspect_container(container.id)
        assert lines == [f"Removed the build's container {container.id[:12]}"]
    finally:
        try:
            container.remove(force=True)
        except NotFound:
            pass
