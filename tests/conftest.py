"""Fixtures that start the real services: Docker Engine, registry, Redis, a Celery worker.

Nothing here is mocked. The Docker Engine must be running (``.ci/run`` starts
it); the registry, Redis and the worker are started per test session on free
loopback ports and stopped afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from builder.db.engine import migrate
from builder.builds.image.classic import connect
from builder.settings import Settings
from buildhook.redis_server import RedisServer, free_port
from tests.payloads import FIXTURES  # noqa: F401 (tests import it from here too)
from webhooks import create_app

pytest_plugins = ["tests.fake_git_host", "tests.git_http_server", "tests.webhook_receiver"]

ROOT = Path(__file__).resolve().parent.parent
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


FINISHED = {"succeeded", "failed", "skipped", "superseded"}


def finished_build(client, build_id: int, timeout: float = 120) -> dict:
    """Poll the API until the build is in a final state; return it."""
    def done():
        build = client.get(f"/api/builds/{build_id}").json
        return build if build["state"] in FINISHED else None

    return wait_for(done, timeout, f"build {build_id} to finish", interval=0.25)  # type: ignore[return-value]


def log_text(client, build_id: int) -> str:
    return "\n".join(line["text"] for line in client.get(f"/api/builds/{build_id}/log").json["lines"])


# --- the Docker Engine and a registry --------------------------------------------------


@pytest.fixture(scope="session")
def docker_client():
    try:
        client = connect()
    except Exception as exc:  # a clear failure, never a skip: the suite needs the engine
        pytest.fail(f"the tests need a running Docker Engine (.ci/run starts one): {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session", autouse=True)
def images_before_the_suite() -> set[str]:
    """The Engine's images when the session starts: never removed by the suite."""
    try:
        client = connect()
    except Exception:  # no Engine: the tests that need one fail saying so
        return set()
    try:
        return {image["Id"] for image in client.api.images(all=True)}
    finally:
        client.close()


def _tags(image: dict) -> list[str]:
    return [tag for tag in image.get("RepoTags") or [] if tag != "<none>:<none>"]


def _made_by_the_suite(image: dict, before: set[str]) -> bool:
    """An image this session made: new since it started, and tagged only for a test registry
    (127.0.0.1:<port>/...) or with a test's own ``buildhook-test-`` name, or untagged (a later build
    took its tag). Its creation time says nothing: a build's image may carry its commit's."""
    return image["Id"] not in before and all(tag.startswith(("127.0.0.1:", "buildhook-test-")) for tag in _tags(image))


@pytest.fixture(scope="module", autouse=True)
def pushed_images_removed(images_before_the_suite: set[str]) -> Iterator[None]:
    """After each module, the images its builds made are removed from the Engine (see
    ``_made_by_the_suite``). Left behind, a thousand of them make the classic builder's cache lookup
    for a ``FROM scratch`` step read every image's config (seconds per build on a busy machine), and
    the time-limit tests measure that instead of the build; the PostgreSQL run in CI would inherit
    the SQLite run's."""
    yield
    try:
        client = connect()
    except Exception:  # a module that never needed the Engine
        return
    try:
        for image in client.api.images():
            if _made_by_the_suite(image, images_before_the_suite):
                for name in _tags(image) or [image["Id"]]:
                    try:
                        client.api.remove_image(name, force=True)
                    except Exception:  # gone already, or in use by a container another test still runs
                        pass
    finally:
        client.close()


@dataclass
class Registry:
    host: str

    def _request(self, path: str, method: str = "GET") -> urllib.request.Request:
        return urllib.request.Request(
            f"http://{self.host}{path}", method=method, headers={"Accept": MANIFEST_TYPES}
        )

    def tags(self, name: str) -> list[str]:
        try:
            with urllib.request.urlopen(self._request(f"/v2/{name}/tags/list"), timeout=5) as resp:
                import json

                return sorted(json.load(resp).get("tags") or [])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise

    def digest(self, name: str, tag: str) -> str:
        with urllib.request.urlopen(self._request(f"/v2/{name}/manifests/{tag}", "HEAD"), timeout=5) as resp:
            return resp.headers["Docker-Content-Digest"]


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> Iterator[Registry]:
    yield from run_registry(tmp_path_factory.mktemp("registry"))


def run_registry(root: Path, notify_url: str | None = None, token: str = "",
                 port: int | None = None, htpasswd: Path | None = None) -> Iterator[Registry]:
    """A docker-registry on a free loopback port (or ``port``), optionally notifying ``notify_url``
    and asking for the users of an ``htpasswd`` file (basic auth)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is not installed (apt-get install docker-registry)")
    port = port or free_port()
    config = root / "config.yml"
    notifications = (
        "notifications:\n  endpoints:\n    - name: buildhook\n"
        f"      url: {notify_url}\n      headers:\n        Authorization: [Bearer {token}]\n"
        "      timeout: 2s\n      threshold: 5\n      backoff: 1s\n"
    ) if notify_url else ""
    auth = f"auth:\n  htpasswd:\n    realm: buildhook-test\n    path: {htpasswd}\n" if htpasswd else ""
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + notifications + auth
    )
    process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                               stderr=open(root / "registry.log", "wb"))

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                return True
        except urllib.error.HTTPError:  # 401: it answers, and asks for credentials
            return True
        except OSError:
            return False

    wait_for(up, 15, "the registry to answer")
    yield Registry(f"127.0.0.1:{port}")
    process.terminate()
    process.wait(10)


# --- Redis, the database, the app and a worker --------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def database_url() -> Iterator[str | None]:
    """The suite's database: ``BUILDHOOK_TEST_DATABASE_URL``; else, with ``BUILDHOOK_TEST_POSTGRES=1``,
    a private PostgreSQL started for the session (``make test-postgres``); else None: SQLite."""
    if os.environ.get("BUILDHOOK_TEST_DATABASE_URL"):
        yield os.environ["BUILDHOOK_TEST_DATABASE_URL"]
    elif os.environ.get("BUILDHOOK_TEST_POSTGRES") == "1":
        from tests.postgres_server import PostgresServer

        with PostgresServer() as server:
            yield server.url
    else:
        yield None


@pytest.fixture(scope="session")
def notifying_registry_port() -> int:
    """The port ``notifying_registry`` will listen on, known before the services start: they trust it."""
    return free_port()


@pytest.fixture(scope="session")
def service_env(tmp_path_factory, registry, redis_server, database_url, notifying_registry_port) -> dict[str, str]:
    data = tmp_path_factory.mktemp("buildhook")
    env = {
        "BUILDHOOK_DATA_DIR": str(data),
        "BUILDHOOK_DATABASE_URL": database_url or f"sqlite:///{data / 'buildhook.db'}",
        "BUILDHOOK_SECRET_KEY": "test-secret-key-" + uuid.uuid4().hex,
        "BUILDHOOK_BROKER_URL": redis_server.url,
        "BUILDHOOK_REGISTRY": registry.host,
        "BUILDHOOK_PUBLIC_URL": "http://buildhook.test",
        "BUILDHOOK_DISPATCH_GRACE": "1",
        "BUILDHOOK_REGISTRY_EVENTS_TOKEN": "registry-token-" + uuid.uuid4().hex,
        "BUILDHOOK_DELIVERY_BACKOFF": "0.3",
        "BUILDHOOK_DEPLOY_STABLE_SECONDS": "1.5",
        "BUILDHOOK_TRUSTED_REGISTRIES": f"127.0.0.1:{notifying_registry_port}",
        "BUILDHOOK_ALLOW_PRIVATE_TARGETS": "127.0.0.1",  # the test receivers listen there
        "BUILDHOOK_ALLOW_FILE_CLONES": "1",  # the tests' repositories are local
    }
    migrate(env["BUILDHOOK_DATABASE_URL"])
    return env


@pytest.fixture(scope="session")
def settings(service_env) -> Settings:
    return Settings.from_env(service_env)


@pytest.fixture(scope="session")
def app(settings):
    return create_app(settings)


@pytest.fixture(scope="session")
def admin_token(app) -> str:
    """An admin's API token, made the way ``buildhook users add`` / ``tokens create`` make them."""
    from builder.accounts.users import add_user, create_token

    with app.extensions["buildhook"].sessions() as session:
        user = add_user(session, "test-admin", "test-admin-password", "admin")
        _row, token = create_token(session, user)
        session.commit()
    return token


def signed_in(client, token: str):
    """A test client that sends ``Authorization: Bearer TOKEN`` with every request."""
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def admin_client(app, name: str):
    """A test client of ``app`` signed in as a new admin ``name`` (apps with a database of their own)."""
    from builder.accounts.users import add_user, create_token

    with app.extensions["buildhook"].sessions() as session:
        _row, token = create_token(session, add_user(session, name, f"{name}-password", "admin"))
        session.commit()
    return signed_in(app.test_client(), token)


@pytest.fixture
def client(app, admin_token):
    return signed_in(app.test_client(), admin_token)


@pytest.fixture(scope="session")
def worker(service_env, docker_client, tmp_path_factory) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker process (``buildhook worker``) on the test broker and database."""
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    env = {**os.environ, **service_env}
    log_file = open(log_path, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "buildhook.cli", "worker", "--concurrency", "2", "--relay-interval", "1"],
        env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT,
    )
    try:
        wait_for(lambda: b" ready." in log_path.read_bytes() or process.poll() is not None, 60,
                 "the worker to start")
        if process.poll() is not None:
            pytest.fail(f"worker exited:\n{log_path.read_text()}")
        yield process
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log_file.close()


@pytest.fixture(scope="session")
def web_server(service_env, tmp_path_factory) -> Iterator[str]:
    """``buildhook web`` (gunicorn) on a free port: what a registry notifies."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("web") / "web.log"
    log_file = open(log_path, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "buildhook.cli", "web", "--port", str(port), "--workers", "1", "--threads", "8"],
        env={**os.environ, **service_env}, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            pytest.fail(f"buildhook web exited:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1):
                return True
        except OSError:
            return False

    try:
        wait_for(healthy, 60, "buildhook web to answer")
        yield base
    finally:
        process.terminate()
        process.wait(20)
        log_file.close()


@pytest.fixture(scope="session")
def notifying_registry(tmp_path_factory, web_server, service_env, notifying_registry_port) -> Iterator[Registry]:
    """A second registry whose notifications go to the running ``buildhook web`` (one of its trusted registries)."""
    yield from run_registry(tmp_path_factory.mktemp("notifying-registry"), f"{web_server}/registry/events",
                            service_env["BUILDHOOK_REGISTRY_EVENTS_TOKEN"], port=notifying_registry_port)


# --- git repositories ------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Octo Cat", "GIT_AUTHOR_EMAIL": "octo@example.com",
           "GIT_COMMITTER_NAME": "Octo Cat", "GIT_COMMITTER_EMAIL": "octo@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


@dataclass
class GitRepo:
    path: Path

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def commit(self, files: dict[str, str | bytes], message: str = "change") -> str:
        for name, content in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "-m", message)
        return git(self.path, "rev-parse", "HEAD")

    def tag(self, name: str) -> str:
        git(self.path, "tag", name)
        return git(self.path, "rev-parse", "HEAD")


def busybox_dockerfile(marker: str, extra: str = "") -> str:
    return (
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        f"RUN echo 'built {marker}'\n"
        f"{extra}"
    )


@pytest.fixture
def make_repo(tmp_path) -> Callable[..., GitRepo]:
    """A git repository on disk whose first commit is a FROM scratch + busybox image."""
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.fail("the static busybox is missing (apt-get install busybox-static)")

    def make(dockerfile: str | None = None, name: str = "repo", files: dict | None = None) -> GitRepo:
        path = tmp_path / name
        path.mkdir()
        git(path, "init", "-q", "-b", "main")
        repo = GitRepo(path)
        shutil.copy(busybox, path / "busybox")  # keeps the executable bit
        repo.commit({"Dockerfile": dockerfile or busybox_dockerfile(uuid.uuid4().hex), **(files or {})},
                    "initial commit")
        return repo

    return make


def pytest_collection_modifyitems(session, config, items):
    """Tests that start the session's worker run last.

    The worker watches the shared test database: once it runs, it claims queued
    builds and its outbox relay sends undispatched ones, which tests of intake
    (that look at builds still queued) must not see happen under them.
    """
    items.sort(key=lambda item: "worker" in getattr(item, "fixturenames", ()))
