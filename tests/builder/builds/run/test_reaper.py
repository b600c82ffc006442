"""The reaper's rules, on a real database (SQLite, the module's own) and, for containers, the real Engine.

A running build whose heartbeat is older than the TTL (or, with none yet, whose start is) is
put back to queued with attempts left, else failed; a fresh one, a finished one or a queued
one is left alone; of two reapers racing for a build exactly one acts; a worker that was only
stalled finds its heartbeat refused and stops. What the dead attempt left (its work directory
on this host, its step containers) is removed.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import delete, select, update

from builder.builds.run import outcome as build_outcome

from builder.builds.run import pipeline
from builder.builds.run.log import BuildLog, CancelCheck
from builder.builds.run.stops import Heartbeat, StopKind
from builder.db.engine import make_engine, make_sessionmaker, migrate
from builder.db.models import Build, BuildLogLine, BuildState, utcnow
from builder.builds.outbox import relay_pending
from builder.builds.run.reaper import FAILED, REQUEUED, reap, sweep_work_dirs
from builder.builds.run.step_containers import attempt_containers
from builder.settings import Settings
from tests.conftest import wait_for

TTL = 30
HOST = socket.gethostname()


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('reaper') / 'reaper.db'}"
    migrate(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def settings(tmp_path, sessions):
    with sessions() as session:  # every test starts with no builds
        session.execute(delete(Build))
        session.commit()
    return Settings(database_url="sqlite://", secret_key="reaper-test", data_dir=tmp_path, heartbeat_ttl=TTL)


def running(sessions, *, state: str = BuildState.BUILDING.value, attempts: int = 1, heartbeat_age: float | None = 0,
            started_age: float = 0, worker: str | None = f"{HOST}:4242") -> int:
    now = utcnow()
    with sessions() as session:
        build = Build(
            provider="github", repository="acme/reaped", clone_url="file:///nowhere", ref="refs/heads/main",
            ref_type="branch", ref_name="main", commit="a" * 40, image="127.0.0.1:5000/acme/reaped",
            tags=["main"], dockerfile="Dockerfile", context=".", state=state, attempts=attempts,
            created_at=now - timedelta(seconds=max(started_age, 60) + 5), dispatched_at=now - timedelta(seconds=600),
            started_at=now - timedelta(seconds=started_age), worker=worker,
            heartbeat_at=None if heartbeat_age is None else now - timedelta(seconds=heartbeat_age),
        )
        session.add(build)
        session.flush()
        session.add(BuildLogLine(build_id=build.id, seq=1, text=f"Build {build.id} (attempt {attempts}): acme/reaped"))
        session.commit()
        return build.id


def row(sessions, build_id: int) -> Build:
    with sessions() as session:
        build = session.get(Build, build_id)
        assert build is not None
        return build


def lines(sessions, build_id: int) -> list[str]:
    with sessions() as session:
        return list(session.scalars(select(BuildLogLine.text).where(BuildLogLine.build_id == build_id)
                                    .order_by(BuildLogLine.seq)))


def test_a_stale_build_with_attempts_left_goes_back_to_queued_unsent_and_the_relay_sends_it(sessions, settings):
    stale = running(sessions, heartbeat_age=TTL + 12, started_age=TTL + 100)
    states: list[tuple[int, str]] = []
    [reaped] = reap(sessions, settings, on_state=lambda b, s: states.append((b, s)))
    assert (reaped.build_id, reaped.outcome, reaped.attempt, reaped.worker) == (stale, REQUEUED, 1, f"{HOST}:4242")
    assert reaped.silent_seconds >= TTL + 12
    build = row(sessions, stale)
    assert build.state == "queued" and build.dispatched_at is None and build.heartbeat_at is None
    assert build.error is None and build.finished_at is None and build.attempts == 1
    last = lines(sessions, stale)[-1]
    assert last.startswith(f"Worker {HOST}:4242 stopped responding (no heartbeat for {TTL + 12} s")
    assert "is retried" in last
    assert states == []  # nothing to announce: the build goes on
    sent: list[int] = []
    relay_pending(sessions, sent.append, grace_seconds=1)
    assert sent == [stale]
    assert reap(sessions, settings) == []  # queued builds are not reaped


def test_a_stale_build_on_its_last_attempt_fails_with_the_reason_and_is_announced(sessions, settings):
    stale = running(sessions, state=BuildState.PUSHING.value, attempts=pipeline.MAX_ATTEMPTS,
                    heartbeat_age=TTL + 5, worker="elsewhere:77")
    states: list[tuple[int, str]] = []
    [reaped] = reap(sessions, settings, on_state=lambda b, s: states.append((b, s)))
    assert reaped.outcome == FAILED
    build = row(sessions, stale)
    expected = (f"worker elsewhere:77 stopped responding (no heartbeat for {reaped.silent_seconds} s); "
                f"gave up after {pipeline.MAX_ATTEMPTS} attempts")
    assert build.state == "failed" and build.error == expected and build.finished_at is not None
    assert lines(sessions, stale)[-1] == f"FAILED: {expected}"
    assert states == [(stale, "failed")]


def test_fresh_finished_and_queued_builds_are_left_alone(sessions, settings):
    fresh = running(sessions, heartbeat_age=TTL - 5, started_age=TTL * 10)  # a long build that still beats
    young = running(sessions, heartbeat_age=None, started_age=TTL - 5)  # claimed by a worker, no beat yet
    untouched = [fresh, young]
    for state in ("succeeded", "failed", "cancelled", "skipped", "superseded", "queued"):
        untouched.append(running(sessions, state=state, heartbeat_age=TTL * 10, started_age=TTL * 10))
    old_style = running(sessions, state=BuildState.CLONING.value, heartbeat_age=None, started_age=TTL + 1,
                        worker=None)  # a build claimed without heartbeats: its start counts
    before = {build_id: (row(sessions, build_id).state, len(lines(sessions, build_id))) for build_id in untouched}
    reaped = reap(sessions, settings)
    assert [r.build_id for r in reaped] == [old_style]
    assert row(sessions, old_style).state == "queued"
    assert "Worker an unknown worker stopped responding" in lines(sessions, old_style)[-1]
    assert {b: (row(sessions, b).state, len(lines(sessions, b))) for b in untouched} == before


def test_two_reapers_racing_for_a_build_act_once(sessions, settings):
    stales = [running(sessions, heartbeat_age=TTL + 1) for _ in range(5)]
    barrier = threading.Barrier(4)
    results: list[list] = []

    def reaper() -> None:
        barrier.wait()
        results.append(reap(sessions, settings, sweep=False))

    threads = [threading.Thread(target=reaper) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    acted = sorted(r.build_id for result in results for r in result)
    assert acted == stales  # each build once, whichever reaper got it
    for build_id in stales:
        assert row(sessions, build_id).state == "queued"
        assert sum("stopped responding" in line for line in lines(sessions, build_id)) == 1


def test_a_heartbeat_that_arrives_before_the_update_wins(sessions, settings, monkeypatch):
    stale = running(sessions, heartbeat_age=TTL + 1)
    from builder.builds.run import reaper
    seen = reaper.stale_builds(sessions, utcnow() - timedelta(seconds=TTL))  # the reaper's SELECT...
    assert [r.id for r in seen] == [stale]
    with sessions() as session:  # ...then the worker beats, before the reaper's UPDATE
        session.execute(update(Build).where(Build.id == stale).values(heartbeat_at=utcnow()))
        session.commit()
    monkeypatch.setattr(reaper, "stale_builds", lambda _sessions, _cutoff: seen)
    assert reap(sessions, settings) == []
    assert row(sessions, stale).state == "building"
    assert not any("stopped responding" in line for line in lines(sessions, stale))


def test_a_stalled_worker_finds_its_build_taken_and_stops_without_writing(sessions, settings):
    """The worker was not dead, only silent: after the reap its heartbeat is refused, it stops (LOST)."""
    build_id = running(sessions, heartbeat_age=TTL + 1, worker=f"{HOST}:4242")
    assert [r.build_id for r in reap(sessions, settings)] == [build_id]
    build_log = BuildLog(sessions, build_id)
    aborted = threading.Event()
    with CancelCheck(sessions, build_id, interval=0.05, heartbeat=Heartbeat(f"{HOST}:4242", 1, 0.1),
                     build_log=build_log) as watcher:
        with watcher.aborting(aborted.set):
            wait_for(aborted.is_set, 5, "the stalled worker's step to be aborted")
    assert watcher.stop_reason is not None and watcher.stop_reason.kind is StopKind.LOST
    build_log("a line the stalled worker would still write")
    build_log.flush()
    assert "a line the stalled worker would still write" not in lines(sessions, build_id)
    # And its final write is fenced: the row stays as the reaper left it.
    fence = pipeline.Fence(build_id, f"{HOST}:4242", 1)
    assert build_outcome.set_state(sessions, fence, state="succeeded") is False
    assert row(sessions, build_id).state == "queued"


def test_the_heartbeat_keeps_a_long_build_from_being_reaped(sessions, settings):
    build_id = running(sessions, heartbeat_age=TTL - 1, worker=f"{HOST}:5151")
    with CancelCheck(sessions, build_id, interval=0.05, heartbeat=Heartbeat(f"{HOST}:5151", 1, 0.1)) as watcher:
        wait_for(lambda: utcnow() - row(sessions, build_id).heartbeat_at < timedelta(seconds=1), 5, "a heartbeat")
        assert reap(sessions, settings, now=utcnow() + timedelta(seconds=TTL - 3)) == []
    assert not watcher.requested


def test_the_dead_attempts_work_directory_on_this_host_is_removed_and_orphans_are_swept(sessions, settings):
    work = settings.effective_work_dir
    stale = running(sessions, attempts=2, heartbeat_age=TTL + 1, worker=f"{HOST}:999999")
    mine = work / f"build-{stale}-2-{uuid.uuid4().hex[:8]}"
    (mine / "src").mkdir(parents=True)
    (mine / "src" / "Dockerfile").write_text("FROM scratch\n")
    live = running(sessions, heartbeat_age=0, attempts=1)
    live_dir = work / f"build-{live}-1-{uuid.uuid4().hex[:8]}"
    old_attempt = work / f"build-{live}-0-{uuid.uuid4().hex[:8]}"  # left by an attempt before
    done = running(sessions, state="succeeded", heartbeat_age=TTL * 10)
    done_dir = work / f"build-{done}-1-{uuid.uuid4().hex[:8]}"
    gone_dir = work / "build-987654321-1-0badc0de"
    unrelated = work / "not-a-build"
    for path in (live_dir, old_attempt, done_dir, gone_dir, unrelated):
        path.mkdir(parents=True)

    [reaped] = reap(sessions, settings, sweep=False)
    assert reaped.work_dirs_removed == (str(mine),) and not mine.exists()
    removed = sweep_work_dirs(sessions, work)
    assert sorted(removed) == sorted(map(str, (old_attempt, done_dir, gone_dir)))
    assert live_dir.is_dir() and unrelated.is_dir()


def test_another_hosts_work_directory_is_left_to_that_host(sessions, settings):
    stale = running(sessions, attempts=1, heartbeat_age=TTL + 1, worker="other-host:12")
    theirs = settings.effective_work_dir / f"build-{stale}-1-{uuid.uuid4().hex[:8]}"
    theirs.mkdir(parents=True)
    [reaped] = reap(sessions, settings, sweep=False)
    assert reaped.work_dirs_removed == ()
    assert theirs.is_dir()  # a shared work directory would be swept: the build is queued now
    assert sweep_work_dirs(sessions, settings.effective_work_dir) == [str(theirs)]


def test_the_dead_attempts_step_containers_are_removed_from_the_engine(sessions, settings, docker_client,
                                                                      tmp_path):
    context = tmp_path / "ctx"
    context.mkdir()
    shutil.copy("/bin/busybox", context / "busybox")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY busybox /bin/busybox\n")
    image, _logs = docker_client.images.build(path=str(context), rm=True)
    left = docker_client.containers.run(image.id, ["/bin/busybox", "sleep", "60"], detach=True, network_mode="none")
    earlier = docker_client.containers.create(image.id, ["/bin/busybox", "true"], network_mode="none")
    try:
        stale = running(sessions, attempts=2, heartbeat_age=TTL + 1)
        with sessions() as session:  # attempt 1 ran a step in `earlier`; attempt 2, the dead one, in `left`
            session.execute(update(BuildLogLine).where(BuildLogLine.build_id == stale, BuildLogLine.seq == 1)
                            .values(text=f"Build {stale} (attempt 1): acme/reaped"))
            session.add_all([
                BuildLogLine(build_id=stale, seq=2, text=f" ---> Running in {earlier.id[:12]}"),
                BuildLogLine(build_id=stale, seq=3, text=f"Build {stale} (attempt 2): acme/reaped"),
                BuildLogLine(build_id=stale, seq=4, text="Step 4/5 : RUN sleep 60"),
                BuildLogLine(build_id=stale, seq=5, text=f" ---> Running in {left.id[:12]}"),
            ])
            session.commit()
        assert attempt_containers(sessions, stale, 2) == [left.id[:12]]
        assert attempt_containers(sessions, stale, 1) == [earlier.id[:12]]
        [reaped] = reap(sessions, settings)
        assert reaped.containers_removed == (left.id[:12],)
        with pytest.raises(Exception, match="No such container"):
            docker_client.api.inspect_container(left.id)
        docker_client.api.inspect_container(earlier.id)  # only the dead attempt's containers are touched
    finally:
        for container in (left, earlier):
            try:
                container.remove(force=True)
            except Exception:
                pass


def test_a_stale_build_someone_asked_to_cancel_ends_cancelled_not_retried(sessions, settings):
    stale = running(sessions, heartbeat_age=TTL + 1, worker="gone:1")
    with sessions() as session:
        session.execute(update(Build).where(Build.id == stale)
                        .values(cancel_requested_at=utcnow(), reason="cancelled by alice"))
        session.commit()
    states: list[tuple[int, str]] = []
    [reaped] = reap(sessions, settings, on_state=lambda b, s: states.append((b, s)))
    assert reaped.outcome == "cancelled"
    build = row(sessions, stale)
    assert build.state == "cancelled" and build.reason == "cancelled by alice" and build.finished_at is not None
    last = lines(sessions, stale)[-1]
    assert last.startswith("Worker gone:1 stopped responding (no heartbeat for ")
    assert last.endswith(": cancelled by alice")
    assert states == [(stale, "cancelled")]


def test_a_stopped_watcher_beats_one_ttl_at_most_then_leaves_the_hung_build_to_the_reaper(sessions, settings):
    """A stop whose step never ends (the build's thread stays blocked): the heartbeat goes on for
    ``4 * every`` (one TTL) while the step could wind down, then stops; the reaper takes the build and
    the watcher, seeing it taken, closes the log."""
    build_id = running(sessions, heartbeat_age=0, worker=f"{HOST}:6262")
    build_log = BuildLog(sessions, build_id, background=True)
    with CancelCheck(sessions, build_id, interval=0.05, heartbeat=Heartbeat(f"{HOST}:6262", 1, 0.2),
                     build_log=build_log) as watcher:
        watcher.stop(StopKind.TIMED_OUT, "timed out after 1 s")
        time.sleep(0.8 + 0.5)  # past the grace
        silent = row(sessions, build_id).heartbeat_at
        time.sleep(0.6)
        assert row(sessions, build_id).heartbeat_at == silent, "no heartbeat after the grace"
        [taken] = reap(sessions, settings, now=silent + timedelta(seconds=TTL + 1))
        assert taken.outcome == REQUEUED
        wait_for(lambda: watcher.stop_reason.kind is StopKind.LOST, 5, "the watcher to see the build taken")
        assert build_log.closed
    assert row(sessions, build_id).state == "queued"
