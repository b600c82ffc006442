"""A build attempt's log and final writes against a real SQLite database that misbehaves.

The build log and the attempt's last writes survive a database that is briefly locked (a
write that fails keeps its lines; the final state is written again); a retry has the whole
log limit and keeps the first attempt's start; an attempt whose build was reaped writes
nothing more, not even its last line; a stopped build whose step hangs (an engine that went
silent) stops beating after one TTL, so the reaper takes it; the Docker client is closed.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import delete, select, update

from builder.builds.run import outcome as build_outcome

from builder.builds.run import pipeline
from builder.builds.run.log import BuildLog
from builder.builds.run.stops import Fence
from builder.db.engine import make_engine, make_sessionmaker, migrate
from builder.builds.image.classic import connect
from builder.db.models import Build, BuildLogLine, BuildState, utcnow
from builder.builds.run.reaper import REQUEUED, reap
from builder.settings import Settings
from builder.builds.run.step_containers import attempt_containers
from tests.conftest import wait_for
from tests.socket_proxy import silent_server

HOST = socket.gethostname()
WORKER = f"{HOST}:{os.getpid()}"


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    path = tmp_path_factory.mktemp("build-log") / "build-log.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="module")
def sessions(database):
    """Sessions that give up on a locked database after 0.2 s (the default waits 30 s)."""
    engine = make_engine(f"sqlite:///{database}", busy_timeout=0.2)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture(autouse=True)
def no_builds(sessions):
    with sessions() as session:
        session.execute(delete(Build))
        session.commit()


def new_build(sessions, *, state: str = BuildState.QUEUED.value, attempts: int = 0, worker: str | None = None,
              dockerfile: str = "Dockerfile", clone_url: str = "file:///nowhere", commit: str = "a" * 40) -> int:
    now = utcnow()
    running = state != BuildState.QUEUED.value
    with sessions() as session:
        build = Build(provider="github", repository="acme/log", clone_url=clone_url, ref="refs/heads/main",
                      ref_type="branch", ref_name="main", commit=commit, image="127.0.0.1:5000/acme/log",
                      tags=["main"], dockerfile=dockerfile, context=".", state=state, attempts=attempts,
                      worker=worker, created_at=now - timedelta(seconds=30),
                      started_at=now if running else None, heartbeat_at=now if running else None)
        session.add(build)
        session.commit()
        return build.id


def lines(sessions, build_id: int) -> list[str]:
    with sessions() as session:
        return list(session.scalars(select(BuildLogLine.text).where(BuildLogLine.build_id == build_id)
                                    .order_by(BuildLogLine.seq)))


def row(sessions, build_id: int) -> Build:
    with sessions() as session:
        build = session.get(Build, build_id)
        assert build is not None
        return build


class Locked:
    """Another process's write transaction on the database file, held until ``release``."""

    def __init__(self, database) -> None:
        self._connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        self._connection.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self._connection.execute("COMMIT")
        self._connection.close()

    def release_in(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(seconds, self.release)
        timer.start()
        return timer


def test_a_final_write_waits_out_a_briefly_locked_database(sessions, database):
    build_id = new_build(sessions, state=BuildState.BUILDING.value, attempts=1, worker=WORKER)
    build_log = BuildLog(sessions, build_id, background=True)
    build_log("Step 1/1 : RUN false")
    states: list[tuple[int, str]] = []
    locked = Locked(database)
    timer = locked.release_in(1.5)
    try:
        outcome = build_outcome.fail(build_log, Fence(build_id, WORKER, 1), "docker build failed: boom",
                                 lambda b, s: states.append((b, s)))
    finally:
        timer.join()
    assert outcome is pipeline.Outcome.FAILED
    build = row(sessions, build_id)
    assert build.state == "failed" and build.error == "docker build failed: boom"
    assert lines(sessions, build_id) == ["Step 1/1 : RUN false", "FAILED: docker build failed: boom"]
    assert states == [(build_id, "failed")]


def test_in_background_mode_a_locked_database_never_reaches_the_builds_thread(sessions, database):
    build_id = new_build(sessions, state=BuildState.BUILDING.value, attempts=1, worker=WORKER)
    build_log = BuildLog(sessions, build_id, background=True)
    locked = Locked(database)
    try:
        for number in range(1500):  # past the batch the build's thread writes itself
            build_log(f"line {number}")
    finally:
        locked.release()
    assert lines(sessions, build_id) == []
    build_log.flush()  # the watcher's next write
    assert lines(sessions, build_id) == [f"line {number}" for number in range(1500)]


def test_lines_are_kept_when_a_write_conflicts_twice(sessions, database):
    """A constraint that fails both tries (here a trigger of the test's): the lines wait for the next write."""
    build_id = new_build(sessions, state=BuildState.BUILDING.value, attempts=1, worker=WORKER)
    build_log = BuildLog(sessions, build_id)
    admin = sqlite3.connect(database, isolation_level=None)
    admin.execute("CREATE TRIGGER refuse_poison BEFORE INSERT ON build_log_lines WHEN NEW.text = 'poison' "
                  "BEGIN SELECT RAISE(ABORT, 'poisoned'); END")
    try:
        build_log("before")
        build_log("poison")
        with pytest.raises(Exception, match="poisoned"):
            build_log.flush()
    finally:
        admin.execute("DROP TRIGGER refuse_poison")
        admin.close()
    build_log("after")
    build_log.flush()
    assert lines(sessions, build_id) == ["before", "poison", "after"]


def test_the_log_limit_counts_only_the_current_attempt(sessions):
    """Attempt 1 wrote more than the limit allows (then a transient failure): attempt 2 has the whole limit."""
    limit = 20_000
    build_id = new_build(sessions, state=BuildState.BUILDING.value, attempts=2, worker=WORKER)
    with sessions() as session:
        session.add(BuildLogLine(build_id=build_id, seq=1, text=f"Build {build_id} (attempt 1): acme/log"))
        session.add_all(BuildLogLine(build_id=build_id, seq=seq, text="x" * 999) for seq in range(2, 20))
        session.add(BuildLogLine(build_id=build_id, seq=20, text="Transient failure, will retry: HTTP 503"))
        session.commit()
    limited: list[str] = []
    build_log = BuildLog(sessions, build_id, max_bytes=limit, on_limit=limited.append)
    build_log(f"Build {build_id} (attempt 2): acme/log")
    build_log(" ---> Running in 0123456789ab")
    for _ in range(15):
        build_log("y" * 999)
    build_log.flush()
    assert not build_log.exceeded and limited == []
    assert attempt_containers(sessions, build_id, 2) == ["0123456789ab"]
    build_log("z" * 3000)
    build_log("z" * 3000)  # the attempt's own lines do count
    assert build_log.exceeded and limited == [f"log limit of {limit} bytes exceeded: build stopped"]


def test_a_retry_keeps_the_first_start_and_records_its_own_cloning_time(sessions):
    build_id = new_build(sessions)
    assert pipeline.claim(sessions, build_id, WORKER)
    first = row(sessions, build_id)
    with sessions() as session:  # the transient failure's requeue
        session.execute(update(Build).where(Build.id == build_id).values(state="queued", heartbeat_at=None))
        session.commit()
    time.sleep(0.05)
    assert pipeline.claim(sessions, build_id, WORKER)
    second = row(sessions, build_id)
    assert second.attempts == 2
    assert second.started_at == first.started_at  # the queue wait is the first attempt's
    assert second.cloning_at > first.cloning_at


@pytest.mark.parametrize("end", ["failed", "cancelled", "requeued"])
def test_an_attempt_whose_build_was_reaped_writes_not_even_its_last_line(sessions, tmp_path, end):
    build_id = new_build(sessions, state=BuildState.BUILDING.value, attempts=1, worker=WORKER)
    build_log = BuildLog(sessions, build_id, background=True)
    build_log("a line the attempt wrote while it still owned the build")
    build_log.flush()
    settings = Settings(database_url="sqlite://", secret_key="log-test", data_dir=tmp_path, heartbeat_ttl=30)
    [taken] = reap(sessions, settings, now=utcnow() + timedelta(seconds=31))  # the worker stalled
    assert taken.outcome == REQUEUED
    reaped_log = lines(sessions, build_id)
    pipeline.claim(sessions, build_id, "another-host:1")  # and another worker runs it now

    build_log("a line the stalled attempt wrote after it lost the build")
    fence = Fence(build_id, WORKER, 1)
    if end == "failed":
        outcome = build_outcome.fail(build_log, fence, "docker build failed", pipeline.no_listener)
    elif end == "cancelled":
        outcome = build_outcome.cancelled(build_log, fence, "cancelled by alice", pipeline.no_listener)
    else:
        outcome = pipeline.Outcome.LOST if not build_outcome.requeue(build_log, fence, "will retry") else None
    assert outcome is pipeline.Outcome.LOST
    assert lines(sessions, build_id) == reaped_log
    build = row(sessions, build_id)
    assert (build.state, build.worker, build.attempts) == ("cloning", "another-host:1", 2)
    if end != "requeued":
        assert build_log.closed
        build_log("and later lines")
        build_log.flush()
        assert lines(sessions, build_id) == reaped_log


def test_a_stopped_build_whose_engine_hangs_stops_beating_and_is_reaped(sessions, tmp_path):
    """The engine (a tcp DOCKER_HOST) accepts the connection and never answers: the build's thread is
    blocked where no stop can reach it. After its timeout the watcher beats for one TTL, then falls
    silent; the reaper takes the build, and the attempt, once it returns, records nothing."""
    ttl = 2
    with silent_server() as engine:
        settings = Settings(database_url="sqlite://", secret_key="log-test", data_dir=tmp_path, heartbeat_ttl=ttl,
                            build_timeout=1, docker_host=f"tcp://127.0.0.1:{engine.port}")
        build_id = new_build(sessions)
        outcomes: list[pipeline.Outcome] = []
        runner = threading.Thread(target=lambda: outcomes.append(
            pipeline.run_build(sessions, settings, build_id, cancel_poll=0.1, worker=WORKER)), daemon=True)
        started = time.monotonic()
        runner.start()
        wait_for(lambda: engine.held, 10, "the engine connection")
        reaped = wait_for(lambda: reap(sessions, settings), 4 * ttl + 5, "the reaper to take the hung build")
        took = time.monotonic() - started
        assert [(r.build_id, r.outcome) for r in reaped] == [(build_id, REQUEUED)]
        assert took >= 1 + ttl, "it beat while the step could still wind down"
        build = row(sessions, build_id)
        assert build.state == "queued" and build.error is None
        time.sleep(1.0)  # the watcher learns the build was taken
    # Leaving closed the engine's connections: the attempt's blocked read returns.
    runner.join(30)
    assert outcomes == [pipeline.Outcome.LOST]
    log = lines(sessions, build_id)
    assert "stopped responding" in log[-1] and not any(line.startswith("FAILED") for line in log), log
    assert row(sessions, build_id).state == "queued"


def test_the_docker_client_is_closed(sessions, tmp_path, make_repo):
    repo = make_repo()
    sha = repo.commit({"README": "no Dockerfile where the build looks\n"}, "readme")
    build_id = new_build(sessions, dockerfile="missing/Dockerfile", clone_url=repo.url, commit=sha)
    closed: list[bool] = []

    def engine(docker_host):
        client = connect(docker_host)
        close = client.close
        client.close = lambda: (closed.append(True), close())[1]
        return client

    settings = Settings(database_url="sqlite://", secret_key="log-test", data_dir=tmp_path, allow_file_clones=True)
    outcome = pipeline.run_build(sessions, settings, build_id, engine=engine, worker=WORKER)
    assert outcome is pipeline.Outcome.FAILED, lines(sessions, build_id)
    assert "missing/Dockerfile" in (row(sessions, build_id).error or "")
    assert closed == [True]
