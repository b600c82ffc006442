"""The broker restarts without its data while a build waits in it: the relay sends it again within seconds.

A Redis of this module's own (no RDB, no append-only file: it keeps nothing on disk), a database
of its own and a ``buildhook worker`` of its own (one build at a time, a relay pass every 0.5 s).
A slow build keeps the worker busy, so the next build's message waits in Redis (prefetch 1, late
acks: a busy worker takes no second message). Redis is restarted: the message is gone, while the
database says the build was handed to the broker. Before, the relay sent it again only after
600 s; now it notices the empty broker on its next pass and the build runs as soon as the worker
is free.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest
import redis

from builder.db.engine import migrate
from builder.db.models import Build
from builder.settings import Settings
from buildhook.redis_server import free_port
from tests.conftest import ROOT, admin_client, busybox_dockerfile, finished_build, git, log_text, wait_for
from tests.webhooks.test_outbox import queued_build_ids
from tests.workers.test_worker_killed_e2e import SECRET, push
from webhooks import create_app
from workers.broker_watch import KEY

class MemoryOnlyRedis:
    """redis-server on a fixed port that keeps nothing on disk: a restart comes back empty."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no", "--dir", str(self.data_dir)],
                                        stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1)
        wait_for(lambda: self._answers(client), 10, "redis-server to answer")

    @staticmethod
    def _answers(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


@pytest.fixture
def broker(tmp_path) -> Iterator[MemoryOnlyRedis]:
    server = MemoryOnlyRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_env(tmp_path, registry, broker) -> dict[str, str]:
    data = tmp_path / "data"
    env = {
        "BUILDHOOK_DATA_DIR": str(data),
        "BUILDHOOK_DATABASE_URL": f"sqlite:///{tmp_path / 'broker-loss.db'}",
        "BUILDHOOK_SECRET_KEY": "broker-loss-key-" + uuid.uuid4().hex,
        "BUILDHOOK_BROKER_URL": broker.url,
        "BUILDHOOK_REGISTRY": registry.host,
        "BUILDHOOK_PUBLIC_URL": "http://buildhook.test",
        "BUILDHOOK_DISPATCH_GRACE": "1",
        "BUILDHOOK_ALLOW_FILE_CLONES": "1",
    }
    migrate(env["BUILDHOOK_DATABASE_URL"])
    return env


@pytest.fixture
def own_app(own_env):
    app = create_app(Settings.from_env(own_env))
    yield app
    app.extensions["buildhook"].engine.dispose()


@pytest.fixture
def own_client(own_app):
    return admin_client(own_app, "broker-loss")


@pytest.fixture
def own_worker(own_env, tmp_path, docker_client) -> Iterator[Path]:
    """``buildhook worker`` with one build at a time; yields its log file."""
    log_path = tmp_path / "worker.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "buildhook.cli", "worker", "--concurrency", "1", "--relay-interval", "0.5"],
        env={**os.environ, **own_env}, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT, cwd=ROOT,
        start_new_session=True)
    try:
        wait_for(lambda: b" ready." in log_path.read_bytes() or process.poll() is not None, 60, "the worker to start")
        if process.poll() is not None:
            pytest.fail(f"the worker exited:\n{log_path.read_text()}")
        yield log_path
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def test_a_build_the_broker_lost_in_a_restart_runs_within_seconds_not_after_600(
        own_client, own_app, broker, own_worker, make_repo, registry):
    marker = f"busy-{uuid.uuid4().hex}"
    repo = make_repo(busybox_dockerfile(marker, f"RUN echo {marker} sleeping; sleep 15\n"))
    suffix = uuid.uuid4().hex[:8]
    trigger = own_client.post("/api/triggers", json={
        "provider": "github", "repository": f"acme/lost-{suffix}", "clone_url": repo.url, "secret": SECRET,
        "image": f"acme/lost-{suffix}"}).json
    wait_for(lambda: redis.Redis(port=broker.port).exists(KEY), 10, "the worker's relay to look at the broker")

    busy = push(own_client, trigger, git(repo.path, "rev-parse", "HEAD"))
    wait_for(lambda: f"{marker} sleeping" in log_text(own_client, busy), 60, "the slow step to run", interval=0.1)
    sha = repo.commit({"Dockerfile": busybox_dockerfile(f"after the restart {uuid.uuid4().hex}")}, "second")
    waiting = push(own_client, trigger, sha)
    wait_for(lambda: waiting in queued_build_ids(broker.port), 5, "the second build's message in Redis")

    def marked() -> bool:
        with own_app.extensions["buildhook"].sessions() as session:
            return session.get(Build, waiting).dispatched_at is not None

    wait_for(marked, 5, "the build to be marked as handed to the broker")
    # The loss is real: the busy build still holds the worker and the second is only a message in Redis.
    assert own_client.get(f"/api/builds/{busy}").json["state"] == "building"
    assert own_client.get(f"/api/builds/{waiting}").json["state"] == "queued"
    assert waiting in queued_build_ids(broker.port)

    broker.stop()
    broker.start()  # empty: the second build's message is gone
    restarted = datetime.now(timezone.utc)
    assert queued_build_ids(broker.port) == []

    try:
        # Started (by the relay's copy) within the budget below; finished whenever the machine allows:
        # on a loaded CI machine the busy build and this one's clone, build and push took over 60 s.
        wait_for(lambda: own_client.get(f"/api/builds/{waiting}").json["started_at"], 120, "the lost build to start")
        build = finished_build(own_client, waiting, timeout=300)
    except AssertionError as exc:  # what the worker saw tells why (its consumer, the relay, the build)
        raise AssertionError(f"{exc}\n--- the worker's log ---\n{own_worker.read_text()[-6000:]}") from None
    assert build["state"] == "succeeded", log_text(own_client, waiting)
    # Sent again on the relay's next pass, it starts as soon as the one worker is free (the busy build
    # sleeps 15 s): not after the 600 s the relay would otherwise wait. Its own run is not timed (a
    # loaded machine makes that slow, not the relay).
    waited = (datetime.fromisoformat(build["started_at"]) - restarted).total_seconds()
    assert waited < 60, f"the lost build started {waited:.0f} s after the broker came back"
    assert finished_build(own_client, busy)["state"] == "succeeded"
    assert "the broker lost its messages" in own_worker.read_text()
    assert sha[:7] in registry.tags(trigger["image"])
