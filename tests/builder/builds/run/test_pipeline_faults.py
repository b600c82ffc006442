"""Components that really fail while a build runs: the Docker Engine, the registry, the git remote.

``builder.builds.run.pipeline.run_build`` runs here as the worker task runs it, with real components:
the machine's Docker Engine (reached through a proxy on loopback that the test cuts; the
engine itself is never stopped, other tests use it), a ``docker-registry`` process of this
module's own (killed for real), git over HTTP. Each attempt that ends ``RETRY`` is run again,
as the task's retry would (without its backoff sleep, checked on its own below), until the
build is finished: failed after ``MAX_ATTEMPTS`` with an error that names the component and
why, or succeeded once the component is back. The builds live in a private SQLite
database: the session's worker never sees them.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from sqlalchemy import select

from builder.builds.run import pipeline
from builder.db.engine import make_engine, make_sessionmaker, migrate
from builder.db.models import Build, BuildLogLine
from builder.settings import Settings
from buildhook.redis_server import free_port
from tests.build_engines import build_engine, step_processes  # noqa: F401 - the engine fixture
from tests.conftest import busybox_dockerfile, wait_for
from tests.git_http_server import TOKEN, serving
from tests.socket_proxy import SocketProxy, http_answer

DOCKER_SOCKET = "/var/run/docker.sock"


# --- a registry of our own, a private database -------------------------------------------


@dataclass
class OwnRegistry:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: the registry dies at once, as on a crash."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def tags(self, name: str) -> list[str]:
        import json

        try:
            with urllib.request.urlopen(f"http://{self.host}/v2/{name}/tags/list", timeout=5) as resp:
                return sorted(json.load(resp).get("tags") or [])
        except OSError:
            return []


@pytest.fixture
def own_registry(tmp_path) -> Iterator[OwnRegistry]:
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is not installed (apt-get install docker-registry)")
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text("version: 0.1\nlog:\n  level: warn\n"
                      f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'registry-data'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    registry = OwnRegistry(process, port)

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"http://{registry.host}/v2/", timeout=1):
                return True
        except OSError:
            return False

    try:
        wait_for(up, 15, "the registry to answer")
        yield registry
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(10)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('faults-db') / 'faults.db'}"
    migrate(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def engine_proxy() -> Iterator[SocketProxy]:
    """The machine's Docker Engine, reached through a proxy on 127.0.0.1 that the test can cut."""
    proxy = SocketProxy(DOCKER_SOCKET).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def cleanup_images(docker_client):
    images: list[str] = []
    yield images
    for image in images:
        for tagged in docker_client.images.list(name=image):
            docker_client.images.remove(tagged.id, force=True)


# --- running a build ----------------------------------------------------------------------


def settings_for(tmp_path: Path, registry: str, docker_host: str | None = None, engine: str = "buildkit") -> Settings:
    return Settings(database_url="sqlite://", secret_key="faults-secret-key", registry=registry,
                    docker_host=docker_host, work_dir=tmp_path / "work", heartbeat_ttl=60, allow_file_clones=True,
                    build_engine=engine)


def new_build(sessions, clone_url: str, commit: str, image: str) -> int:
    with sessions() as session:
        build = Build(provider="github", repository="acme/faults", clone_url=clone_url, ref="refs/heads/main",
                      ref_type="branch", ref_name="main", commit=commit, image=image, tags=["main"],
                      dockerfile="Dockerfile", context=".")
        session.add(build)
        session.commit()
        return build.id


@dataclass
class Ended:
    outcome: pipeline.Outcome
    attempts: list[pipeline.Outcome]
    build: Build
    log: str
    seconds: float


def run_until_finished(sessions, settings: Settings, build_id: int,
                       before_retry: Callable[[int], None] = lambda attempt: None) -> Ended:
    """Run the build as the worker task does, again after each RETRY, until it is finished."""
    started = time.monotonic()
    outcomes: list[pipeline.Outcome] = []
    while True:
        outcome = pipeline.run_build(sessions, settings, build_id, cancel_poll=0.1)
        outcomes.append(outcome)
        assert len(outcomes) <= pipeline.MAX_ATTEMPTS, outcomes  # never more attempts than that
        if outcome is not pipeline.Outcome.RETRY:
            break
        with sessions() as session:
            assert session.get(Build, build_id).state == "queued"  # requeued for the task's retry
        before_retry(len(outcomes))
    seconds = time.monotonic() - started
    with sessions() as session:
        build = session.get(Build, build_id)
        lines = session.scalars(select(BuildLogLine.text).where(BuildLogLine.build_id == build_id)
                                .order_by(BuildLogLine.seq)).all()
    assert not any((settings.effective_work_dir).iterdir()) if settings.effective_work_dir.exists() else True
    return Ended(outcome, outcomes, build, "\n".join(lines), seconds)


def step_containers(docker_client: docker.DockerClient, marker: str) -> list[object]:
    """Containers (any state) whose command carries ``marker`` (a classic build step's), and processes
    whose command line does (a BuildKit step's)."""
    return [c["Id"] for c in docker_client.api.containers(all=True) if marker in (c.get("Command") or "")] + \
        step_processes(marker)


def log_count(sessions, build_id: int, text: str) -> int:
    with sessions() as session:
        return len(session.scalars(select(BuildLogLine.id).where(BuildLogLine.build_id == build_id,
                                                                BuildLogLine.text.contains(text))).all())


def when_logged(sessions, build_id: int, text: str, action: Callable[[], None]) -> None:
    """Run ``action`` once the build's log has one more line with ``text`` than now (BuildKit's output
    reaches its client base64-encoded inside the engine's answer: a proxy cannot see it)."""
    seen = log_count(sessions, build_id, text)

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if log_count(sessions, build_id, text) > seen:
                action()
                return
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()


def when_running(engine: str, proxy: SocketProxy, sessions, build_id: int, text: str,
                 action: Callable[[], None]) -> None:
    """``action`` once the build's step printed ``text``: seen in the engine's stream (classic) or the log."""
    if engine == "classic":
        proxy.when_sent(text.encode(), action)
    else:
        when_logged(sessions, build_id, text, action)


def slow_step(marker: str) -> str:
    # The step prints "<marker>-running" (its command text reads <marker>-run""ning), then sleeps.
    return f'RUN echo {marker}-run""ning; sleep 30; echo {marker} woke\n'  # the shell (and marker) stays


# --- the Docker Engine ----------------------------------------------------------------------


def test_an_engine_that_refuses_from_the_start_fails_the_build_naming_it(sessions, tmp_path, make_repo):
    repo = make_repo()
    dead = SocketProxy(DOCKER_SOCKET).start()
    dead.cut()  # nothing listens on its port any more: connections are refused
    settings = settings_for(tmp_path, "127.0.0.1:1", docker_host=dead.url)
    build_id = new_build(sessions, repo.url, head_commit(repo), "127.0.0.1:1/acme/faults")

    ended = run_until_finished(sessions, settings, build_id)

    assert ended.attempts == [pipeline.Outcome.RETRY] * 2 + [pipeline.Outcome.FAILED]
    assert ended.build.state == "failed" and ended.build.attempts == 3
    assert ended.build.error.startswith(f"Docker Engine unreachable at {dead.url}: ")
    assert "Connection refused" in ended.build.error
    assert ended.build.error.endswith("(gave up after 3 attempts)")
    assert ended.log.count("Transient failure, will retry: Docker Engine unreachable") == 2
    assert ended.seconds < 20


def test_an_engine_connection_cut_mid_build_is_retried_then_fails_naming_the_engine(
        sessions, tmp_path, make_repo, engine_proxy, docker_client, own_registry, cleanup_images, build_engine):
    marker = f"faults-{uuid.uuid4().hex}"
    repo = make_repo(busybox_dockerfile(marker, slow_step(marker)))
    image = f"{own_registry.host}/acme/faults-{marker[-8:]}"
    cleanup_images.append(image)
    settings = settings_for(tmp_path, own_registry.host, docker_host=engine_proxy.url, engine=build_engine.kind)
    build_id = new_build(sessions, repo.url, head_commit(repo), image)
    when_running(build_engine.kind, engine_proxy, sessions, build_id, f"{marker}-running", engine_proxy.cut)

    def before_retry(attempt: int) -> None:
        # The engine saw its client go: it killed the sleeping step (and removed its container).
        wait_for(lambda: not step_containers(docker_client, marker), 15, "the step's container to go")
        engine_proxy.resume()  # the engine is back, and is cut again in the middle of the next attempt
        when_running(build_engine.kind, engine_proxy, sessions, build_id, f"{marker}-running", engine_proxy.cut)

    ended = run_until_finished(sessions, settings, build_id, before_retry)

    assert ended.attempts == [pipeline.Outcome.RETRY] * 2 + [pipeline.Outcome.FAILED], ended.log
    assert engine_proxy.cuts == 3
    error = ended.build.error
    assert error.startswith(f"Docker Engine at {engine_proxy.url} unreachable during the build: "), error
    assert error.endswith("(gave up after 3 attempts)")
    assert ended.log.count(f"{marker}-running") == 3  # each attempt got as far as the sleeping step
    wait_for(lambda: not step_containers(docker_client, marker), 15, "the last step's container to go")
    assert own_registry.tags(image.split("/", 1)[1]) == []
    assert ended.seconds < 45


def test_a_build_cut_off_from_the_engine_succeeds_once_the_engine_is_back(
        sessions, tmp_path, make_repo, engine_proxy, docker_client, own_registry, cleanup_images, build_engine):
    marker = f"faults-{uuid.uuid4().hex}"
    repo = make_repo(busybox_dockerfile(marker, f'RUN echo {marker}-run""ning; sleep 8\n'))
    image = f"{own_registry.host}/acme/faults-{marker[-8:]}"
    cleanup_images.append(image)
    settings = settings_for(tmp_path, own_registry.host, docker_host=engine_proxy.url, engine=build_engine.kind)
    build_id = new_build(sessions, repo.url, head_commit(repo), image)
    when_running(build_engine.kind, engine_proxy, sessions, build_id, f"{marker}-running", engine_proxy.cut)

    ended = run_until_finished(sessions, settings, build_id, lambda attempt: engine_proxy.resume())

    assert ended.attempts == [pipeline.Outcome.RETRY, pipeline.Outcome.SUCCEEDED], ended.log
    assert ended.build.state == "succeeded" and ended.build.error is None and ended.build.attempts == 2
    assert f"Transient failure, will retry: Docker Engine at {engine_proxy.url} unreachable during the build" \
        in ended.log
    assert own_registry.tags(image.split("/", 1)[1]) == ["main"]
    assert not step_containers(docker_client, marker)


# --- the registry ---------------------------------------------------------------------------


def test_a_registry_killed_before_the_push_fails_the_build_naming_it(
        sessions, tmp_path, make_repo, engine_proxy, own_registry, cleanup_images, build_engine):
    marker = f"faults-{uuid.uuid4().hex}"
    repo = make_repo(busybox_dockerfile(marker, f'RUN echo {marker}-last""step; sleep 4\n'))
    image = f"{own_registry.host}/acme/faults-{marker[-8:]}"
    cleanup_images.append(image)
    settings = settings_for(tmp_path, own_registry.host, docker_host=engine_proxy.url, engine=build_engine.kind)
    build_id = new_build(sessions, repo.url, head_commit(repo), image)
    # during the build's last step
    when_running(build_engine.kind, engine_proxy, sessions, build_id, f"{marker}-laststep", own_registry.kill)

    ended = run_until_finished(sessions, settings, build_id)

    assert ended.attempts == [pipeline.Outcome.RETRY] * 2 + [pipeline.Outcome.FAILED], ended.log
    error = ended.build.error
    assert error.startswith(f"registry {own_registry.host} unreachable during the push of {image}:main: "), error
    assert "connection refused" in error and error.endswith("(gave up after 3 attempts)")
    assert ended.log.count("Built sha256:") == 3  # every attempt built, and failed at the push
    assert ended.seconds < 30


def push_through(front: SocketProxy, sessions, tmp_path: Path, make_repo, cleanup_images: list[str]):
    """Build a new commit whose image goes to the registry behind ``front``, to its end; the proxy is
    stopped afterwards. Returns the image name and how the build ended."""
    marker = f"faults-{uuid.uuid4().hex}"
    repo = make_repo(busybox_dockerfile(marker))
    image = f"{front.address}/acme/faults-{marker[-8:]}"
    cleanup_images.append(image)
    build_id = new_build(sessions, repo.url, head_commit(repo), image)
    try:
        return image, run_until_finished(sessions, settings_for(tmp_path, front.address), build_id)
    finally:
        front.stop()


def test_a_registry_that_dies_during_the_push_fails_the_build_naming_it(
        sessions, tmp_path, make_repo, own_registry, cleanup_images):
    # The registry dies as the engine sends the manifest, after the layers went up.
    front = SocketProxy(("127.0.0.1", own_registry.port)).start()
    front.on_request(r"^PUT /v2/.*/manifests/", then=own_registry.kill)
    image, ended = push_through(front, sessions, tmp_path, make_repo, cleanup_images)

    assert ended.attempts == [pipeline.Outcome.RETRY] * 2 + [pipeline.Outcome.FAILED], ended.log
    assert any(request.startswith("PATCH /v2/") for request in front.requests)  # layers were uploading
    # The first attempt lost the registry as it sent the manifest; the next ones found it gone.
    assert (f"Transient failure, will retry: registry {front.address} unreachable during the push of {image}:main: "
            f'Put "http://{front.address}/v2/{image.split("/", 1)[1]}/manifests/main": EOF') in ended.log
    error = ended.build.error
    assert error.startswith(f"registry {front.address} unreachable during the push of {image}:main: "), error
    assert error.endswith("(gave up after 3 attempts)")
    assert ended.seconds < 30


def test_a_registry_answering_503_fails_the_build_naming_it_and_the_status(
        sessions, tmp_path, make_repo, own_registry, cleanup_images):
    front = SocketProxy(("127.0.0.1", own_registry.port)).start()
    body = b'{"errors":[{"code":"UNAVAILABLE","message":"storage backend unavailable"}]}'
    front.on_request(r"^PUT /v2/.*/manifests/", answer=http_answer(503, "Service Unavailable", body))
    image, ended = push_through(front, sessions, tmp_path, make_repo, cleanup_images)

    assert ended.attempts == [pipeline.Outcome.RETRY] * 2 + [pipeline.Outcome.FAILED], ended.log
    error = ended.build.error
    assert error.startswith(f"registry {front.address} failed during the push of {image}:main (HTTP 503): "), error
    assert error.endswith("(gave up after 3 attempts)")
    assert own_registry.tags(image.split("/", 1)[1]) == []  # no manifest, no tag
    assert ended.seconds < 30


# --- the git remote -------------------------------------------------------------------------


def test_an_unreachable_git_remote_fails_the_build_naming_it_without_credentials(sessions, tmp_path):
    port = free_port()  # nothing listens there
    url = f"http://x-access-token:{TOKEN}@127.0.0.1:{port}/acme/faults.git"
    settings = settings_for(tmp_path, "127.0.0.1:1")  # the machine's engine: only git fails
    build_id = new_build(sessions, url, "a" * 40, "127.0.0.1:1/acme/faults")

    ended = run_until_finished(sessions, settings, build_id)

    assert ended.attempts == [pipeline.Outcome.RETRY] * 2 + [pipeline.Outcome.FAILED], ended.log
    error = ended.build.error
    assert error.startswith(f"git remote unreachable: http://127.0.0.1:{port}/acme/faults.git: "), error
    assert "Failed to connect" in error or "Couldn't connect" in error
    assert error.endswith("(gave up after 3 attempts)")
    assert TOKEN not in error and TOKEN not in ended.log
    assert ended.seconds < 20


def test_a_git_server_that_comes_back_lets_the_retry_build(sessions, tmp_path, make_repo, own_registry,
                                                           cleanup_images):
    repo = make_repo()
    bare = tmp_path / "served"
    bare.mkdir()
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.path), str(bare / "faults.git")], check=True)
    with serving(bare) as server:
        front = SocketProxy(("127.0.0.1", server.server_address[1])).start()
        front.cut()  # the git server is down when the build starts
        url = f"http://x-access-token:{TOKEN}@{front.address}/faults.git"
        image = f"{own_registry.host}/acme/faults-{uuid.uuid4().hex[:8]}"
        cleanup_images.append(image)
        build_id = new_build(sessions, url, head_commit(repo), image)
        try:
            ended = run_until_finished(sessions, settings_for(tmp_path, own_registry.host), build_id,
                                       lambda attempt: front.resume())
        finally:
            front.stop()

    assert ended.attempts == [pipeline.Outcome.RETRY, pipeline.Outcome.SUCCEEDED], ended.log
    assert f"Transient failure, will retry: git remote unreachable: http://{front.address}/faults.git" in ended.log
    assert TOKEN not in ended.log
    assert own_registry.tags(image.split("/", 1)[1]) == ["main"]


# --- the retries are bounded ------------------------------------------------------------------


def test_retries_and_their_backoff_are_bounded():
    from workers.tasks import backoff

    assert pipeline.MAX_ATTEMPTS == 3
    # The task waits backoff(n) before attempt n + 1: full jitter up to 5 s, 10 s, ... capped at 300 s.
    for attempt in range(1, 12):
        ceiling = min(300.0, 5.0 * 2 ** (attempt - 1))
        assert all(0 <= backoff(attempt) <= ceiling for _ in range(200))
    worst = sum(min(300.0, 5.0 * 2 ** (attempt - 1)) for attempt in range(1, pipeline.MAX_ATTEMPTS))
    assert worst == 15.0  # at most 15 s of waiting between the 3 attempts of a build


def head_commit(repo) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo.path, check=True, capture_output=True,
                          text=True).stdout.strip()
