"""The build timeout and the log size limit, enforced by the pipeline's watcher, on the real Engine.

Each build is run in this process (``pipeline.run_build``), as the worker's task does: a build
over its time limit (the trigger's, else BUILDHOOK_BUILD_TIMEOUT) is stopped where it is, its
step container and work directory removed, and it fails with "timed out"; a git fetch that
hangs is killed the same way; a build whose log passes BUILDHOOK_MAX_LOG_BYTES is stopped and
fails with the limit's message as its last log line. None of them is retried.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, update

from builder.builds.run import pipeline
from builder.db.models import Build, BuildLogLine, Trigger, utcnow
from tests.builder.builds.image.test_build_resource_limits import MB, SHOW_LIMITS, value
from tests.build_engines import build_engine, step_output, step_processes  # noqa: F401 - the engine fixture
from tests.conftest import busybox_dockerfile
from tests.socket_proxy import silent_server

SECRET = "limits-webhook-secret"
# Long enough for the clone and the cached steps on a busy 2-core machine, so the slow step has started.
LIMIT = 6


@pytest.fixture
def project(client, make_repo):
    suffix = uuid.uuid4().hex[:8]
    repo = make_repo()
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": f"acme/limits-{suffix}", "clone_url": repo.url,
        "secret": SECRET, "image": f"acme/limits-{suffix}", "default_branch": "main",
    }).json
    return repo, trigger


def queued_build(app, trigger_id: int, sha: str, clone_url: str | None = None) -> int:
    """A queued build of ``sha`` that no worker takes (marked dispatched now, never sent)."""
    with app.extensions["buildhook"].sessions() as session:
        trigger = session.get(Trigger, trigger_id)
        build = Build(
            trigger_id=trigger_id, rule_id=trigger.rules[0].id, provider="github", repository=trigger.repository,
            clone_url=clone_url or trigger.clone_url, ref="refs/heads/main", ref_type="branch", ref_name="main",
            commit=sha, image=f"{app.extensions['buildhook'].settings.registry}/{trigger.image}", tags=["main"],
            dockerfile="Dockerfile", context=".", dispatched_at=utcnow(),
        )
        session.add(build)
        session.commit()
        return build.id


def set_trigger_timeout(app, trigger_id: int, seconds: int | None) -> None:
    with app.extensions["buildhook"].sessions() as session:
        session.execute(update(Trigger).where(Trigger.id == trigger_id).values(build_timeout=seconds))
        session.commit()


def stored(app, build_id: int) -> tuple[Build, list[str]]:
    with app.extensions["buildhook"].sessions() as session:
        build = session.get(Build, build_id)
        lines = list(session.scalars(select(BuildLogLine.text).where(BuildLogLine.build_id == build_id)
                                     .order_by(BuildLogLine.seq)))
        return build, lines


def step_containers(docker_client, marker: str) -> list[object]:
    """A classic step's containers, and any step's processes (BuildKit's steps are no containers)."""
    return [c["Id"] for c in docker_client.api.containers(all=True) if marker in (c.get("Command") or "")] + \
        step_processes(marker)


def processes_working_in(root, prefix: str, settle: float = 2.0) -> list[str]:
    """Command lines of processes (any owner) whose working directory is one of ``root/prefix*``, even
    deleted; waits up to ``settle`` seconds for killed ones to go. Other builds' processes are not counted."""
    pattern = f"{root.resolve()}/{prefix}"
    deadline = time.monotonic() + settle
    while True:
        found = []
        for entry in os.scandir("/proc"):
            try:
                if entry.name.isdigit() and os.readlink(f"/proc/{entry.name}/cwd").startswith(pattern):
                    found.append(open(f"/proc/{entry.name}/cmdline", "rb").read().replace(b"\0", b" ").decode())
            except OSError:
                continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def run(app, settings, build_id: int) -> tuple[pipeline.Outcome, list[tuple[int, str]], float]:
    states: list[tuple[int, str]] = []
    started = time.monotonic()
    outcome = pipeline.run_build(app.extensions["buildhook"].sessions, settings, build_id,
                                 on_state=lambda b, s: states.append((b, s)), cancel_poll=0.2)
    return outcome, states, time.monotonic() - started


@pytest.mark.parametrize("source", ["trigger", "BUILDHOOK_BUILD_TIMEOUT"])
def test_a_build_over_its_time_limit_is_stopped_and_fails(app, settings, project, docker_client, registry, source,
                                                          build_engine):
    settings = settings.with_(build_engine=build_engine.kind)
    repo, trigger = project
    marker = f"timeout-{uuid.uuid4().hex}"
    # The steps before the slow one are built once without a limit, so a cold cache cannot use the time up.
    warm = busybox_dockerfile("limits-warm")
    warm_id = queued_build(app, trigger["id"], repo.commit({"Dockerfile": warm}, "warm the cache"))
    assert run(app, settings, warm_id)[0] is pipeline.Outcome.SUCCEEDED
    warm_digest = registry.digest(trigger["image"], "main")
    sha = repo.commit({"Dockerfile": warm + f"RUN echo {marker}; sleep 60; echo {marker} woke\n"}, "slow")
    if source == "trigger":
        set_trigger_timeout(app, trigger["id"], LIMIT)
        limited = settings.with_(build_timeout=3600)  # the trigger's limit wins over the default
    else:
        limited = settings.with_(build_timeout=LIMIT)  # no limit on the trigger: the default applies
    build_id = queued_build(app, trigger["id"], sha)

    outcome, states, took = run(app, limited, build_id)

    build, lines = stored(app, build_id)
    assert outcome is pipeline.Outcome.FAILED, lines
    assert build.state == "failed" and build.error == f"timed out after {LIMIT} s (limit from {source})"
    assert lines[-1] == f"FAILED: timed out after {LIMIT} s (limit from {source})"
    assert any(marker in line for line in lines), "\n".join(["the slow step had not started:", *lines])
    assert LIMIT <= took < LIMIT + 8
    assert states == [(build_id, "running"), (build_id, "failed")]
    assert step_containers(docker_client, marker) == [], "the step's container is removed"
    assert list(settings.effective_work_dir.glob(f"build-{build_id}-*")) == [], "work directory removed"
    assert build.attempts == 1 and build.finished_at is not None  # never retried
    assert registry.digest(trigger["image"], "main") == warm_digest, "nothing of the stopped build was pushed"


def test_a_git_fetch_that_hangs_is_killed_at_the_time_limit(app, settings, project):
    """A git server that accepts the connection and never answers: git would wait forever."""
    _repo, trigger = project
    with silent_server() as git_server:
        url = f"http://127.0.0.1:{git_server.port}/hanging.git"
        build_id = queued_build(app, trigger["id"], "b" * 40, clone_url=url)
        outcome, _states, took = run(app, settings.with_(build_timeout=2), build_id)
        assert git_server.held, "git had connected"
    build, lines = stored(app, build_id)
    assert outcome is pipeline.Outcome.FAILED, lines
    assert build.error == "timed out after 2 s (limit from BUILDHOOK_BUILD_TIMEOUT)"
    assert 2 <= took < 6
    assert list(settings.effective_work_dir.glob(f"build-{build_id}-*")) == []
    assert processes_working_in(settings.effective_work_dir, f"build-{build_id}-") == [], "no git process is left"


def test_a_build_whose_log_passes_the_limit_is_stopped_and_fails(app, settings, project, docker_client, registry,
                                                                  build_engine):
    settings = settings.with_(build_engine=build_engine.kind)
    repo, trigger = project
    marker = f"chatty-{uuid.uuid4().hex}"
    chatty = f"RUN echo {marker}; for i in $(seq 1 200000); do echo line $i of a very chatty build step; done\n"
    sha = repo.commit({"Dockerfile": busybox_dockerfile(marker, chatty)}, "chatty")
    build_id = queued_build(app, trigger["id"], sha)
    limit = 20_000

    outcome, states, took = run(app, settings.with_(max_log_bytes=limit), build_id)

    build, lines = stored(app, build_id)
    message = f"log limit of {limit} bytes exceeded: build stopped"
    assert outcome is pipeline.Outcome.FAILED, lines[-5:]
    assert build.state == "failed" and build.error == message
    assert lines[-1] == message, "the limit's line is the log's last"
    assert any("line 1 of a very chatty" in line for line in lines)
    size = sum(len(line.encode()) + 1 for line in lines)
    assert size <= limit + len(message) + 1
    assert size > limit // 2
    assert took < 20
    assert states[-1] == (build_id, "failed") and build.attempts == 1
    assert step_containers(docker_client, marker) == []
    assert list(settings.effective_work_dir.glob(f"build-{build_id}-*")) == []
    assert registry.tags(trigger["image"]) == []


def test_no_log_limit_when_it_is_zero(app, settings, project, registry, build_engine):
    settings = settings.with_(build_engine=build_engine.kind)
    repo, trigger = project
    sha = repo.commit({"Dockerfile": busybox_dockerfile(uuid.uuid4().hex, "RUN seq 1 3000\n")}, "some output")
    build_id = queued_build(app, trigger["id"], sha)
    outcome, _states, _took = run(app, settings.with_(max_log_bytes=0), build_id)
    build, lines = stored(app, build_id)
    assert outcome is pipeline.Outcome.SUCCEEDED, lines[-5:]
    assert sum(len(line) + 1 for line in lines) > 12_000
    assert "3000" in step_output(lines)


def test_the_operators_limits_reach_every_build_step(app, settings, project, registry, build_engine):
    """BUILDHOOK_BUILD_MEMORY / _CPUS / _NETWORK, as settings, are what a step of a real build sees (with
    BuildKit: what the engine's BuildKit cgroup, above every step's, is limited to)."""
    settings = settings.with_(build_engine=build_engine.kind)
    repo, trigger = project
    marker = uuid.uuid4().hex
    steps = SHOW_LIMITS.format(marker=marker) + "\nRUN echo net=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ')\n"
    sha = repo.commit({"Dockerfile": busybox_dockerfile(marker, steps)}, "show limits")
    build_id = queued_build(app, trigger["id"], sha)

    outcome, _states, _took = run(app, settings.with_(build_memory=96 * MB, build_cpus=0.25,
                                                     build_network="none"), build_id)

    build, lines = stored(app, build_id)
    assert outcome is pipeline.Outcome.SUCCEEDED, lines
    assert value(lines, "net") == "lo"
    if build_engine.buildkit:
        assert "Limits: memory 96 MB, 0.25 CPUs, network none (BuildKit: one cap shared by all builds of this " \
               "engine, cgroup docker/buildkit)" in lines
        cgroups = Path("/sys/fs/cgroup")
        assert (cgroups / "memory" / build_engine.cgroup / "memory.limit_in_bytes").read_text().strip() == \
            str(96 * MB)
        assert (cgroups / "cpu" / build_engine.cgroup / "cpu.cfs_quota_us").read_text().strip() == "25000"
        return
    assert value(lines, "memory").split()[0] == str(96 * MB)
    assert value(lines, "cpu").split() == ["25000", "100000"]
    assert "Limits: memory 96 MB, 0.25 CPUs, network none" in lines
