"""The real services a benchmark runs against, all on 127.0.0.1, all stopped on exit.

``Stack`` owns a temporary data directory with a migrated SQLite database, and
optionally a ``docker-registry`` and a private ``redis-server`` on free loopback
ports; ``start_web()`` runs ``buildhook web`` (gunicorn, its production defaults)
and ``start_worker()`` a ``buildhook worker``, both as subprocesses with
``BUILDHOOK_*`` variables. ``close()`` (or leaving the ``with`` block) stops every
process it started, by its own handle, and removes the images it tagged.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import IO, Any

from bench.common import LOOPBACK, ROOT, Web, wait_until
from builder.db.engine import make_engine, make_sessionmaker, migrate
from builder.secrets import SecretBox
from builder.settings import Settings
from builder.triggers.services import TriggerSpec, create_trigger
from buildhook.redis_server import RedisServer, free_port


class Process:
    """A subprocess with its output in a log file; ``stop()`` ends it by its own pid."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "wb")
        self.popen = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._log.close()


class Registry:
    """``docker-registry serve`` on a free loopback port, storage in ``root``."""

    def __init__(self, root: Path) -> None:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RuntimeError("docker-registry is not installed (apt-get install docker-registry)")
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {LOOPBACK}:{self.port}\n"
        )
        self.process = Process("docker-registry", [binary, "serve", str(config)], dict(os.environ),
                               root / "registry.log")

        def up() -> bool:
            if not self.process.alive():
                raise RuntimeError(f"docker-registry exited:\n{self.process.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1):
                    return True
            except OSError:
                return False

        try:
            wait_until(up, 20, "the registry to answer")
        except BaseException:
            self.process.stop()
            raise

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def tags(self, name: str) -> list[str]:
        import json
        import urllib.error

        try:
            with urllib.request.urlopen(f"http://{self.host}/v2/{name}/tags/list", timeout=5) as resp:
                return sorted(json.load(resp).get("tags") or [])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise

    def stop(self) -> None:
        self.process.stop()


def _clean_environment() -> dict[str, str]:
    """This process's environment without any BUILDHOOK_* setting of the caller's."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BUILDHOOK_")}


class Stack:
    """A data directory, database, and (optionally) registry, Redis, web app and worker.

    Use as a context manager; everything started is stopped on leaving, also on errors.
    """

    def __init__(self, root: Path, *, registry: bool = True, redis: bool = True,
                 extra_env: dict[str, str] | None = None) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.run_id = uuid.uuid4().hex[:8]
        self._exit = contextlib.ExitStack()
        self._processes: list[Process] = []
        self._images: set[str] = set()
        self.worker: Process | None = None
        self.web: Web | None = None
        self._web_process: Process | None = None
        self.web_port = free_port()
        self._auth: dict[str, str] | None = None
        try:
            self._start(registry, redis, extra_env or {})
        except BaseException:
            self._exit.close()
            raise

    def _start(self, registry: bool, redis: bool, extra_env: dict[str, str]) -> None:
        self.registry = Registry(self.root / "registry") if registry else None
        if self.registry:
            self._exit.callback(self.registry.stop)
        self.redis = RedisServer(self.root / "redis").start() if redis else None
        if self.redis:
            self._exit.callback(self.redis.stop)
        data = self.root / "data"
        self.database_path = data / "buildhook.db"
        self.env = {
            "BUILDHOOK_DATA_DIR": str(data),
            "BUILDHOOK_DATABASE_URL": f"sqlite:///{self.database_path}",
            "BUILDHOOK_SECRET_KEY": "bench-secret-key-" + uuid.uuid4().hex,
            "BUILDHOOK_REGISTRY": self.registry.host if self.registry else f"{LOOPBACK}:5000",
            "BUILDHOOK_PUBLIC_URL": f"http://{LOOPBACK}:{self.web_port}",
            "BUILDHOOK_ALLOW_FILE_CLONES": "1",  # the benchmarks build local repositories
            **({"BUILDHOOK_BROKER_URL": self.redis.url} if self.redis else {}),
            **extra_env,
        }
        self.settings = Settings.from_env(self.env)
        # once, before web and worker both try at startup
        migrate(self.settings.database_url, self.settings.secret_key)
        self._engine = make_engine(self.settings.database_url)
        self._exit.callback(self._engine.dispose)
        self.sessions = make_sessionmaker(self._engine)

    # --- lifetime ------------------------------------------------------------------

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            for process in reversed(self._processes):
                process.stop()
            self._processes.clear()
            self._remove_images()
        finally:
            self._exit.close()

    # --- processes -------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> Process:
        env = {**_clean_environment(), **self.env}
        process = Process(name, [sys.executable, "-m", "buildhook.cli", *args], env, self.root / f"{name}.log")
        self._processes.append(process)
        return process

    def start_web(self, workers: int | None = None, threads: int | None = None) -> Web:
        """``buildhook web`` (gunicorn); without arguments its production defaults (2 workers x 8 threads)."""
        args = ["web", "--host", LOOPBACK, "--port", str(self.web_port)]
        if workers is not None:
            args += ["--workers", str(workers)]
        if threads is not None:
            args += ["--threads", str(threads)]
        process = self._spawn(f"web-{len(self._processes)}", args)
        web = Web(self.web_port)

        def healthy() -> bool:
            if not process.alive():
                raise RuntimeError(f"buildhook web exited:\n{process.log_tail()}")
            try:
                return web.request("GET", "/healthz", timeout=1)[0] == 200
            except OSError:
                return False

        wait_until(healthy, 60, "buildhook web to answer", interval=0.1)
        self._web_process = process
        self.web = web
        return web

    def stop_web(self) -> None:
        if self._web_process:
            self._web_process.stop()
            self._processes.remove(self._web_process)
            self._web_process = None
            self.web = None

    def start_worker(self, concurrency: int = 1, relay_interval: float = 1.0) -> Process:
        """``buildhook worker``; returns once Celery says it is ready."""
        process = self._spawn(f"worker-{len(self._processes)}", ["worker", "--concurrency", str(concurrency),
                                         "--relay-interval", str(relay_interval)])

        def ready() -> bool:
            if not process.alive():
                raise RuntimeError(f"buildhook worker exited:\n{process.log_tail()}")
            return b" ready." in process.log_path.read_bytes()

        wait_until(ready, 60, "the worker to start", interval=0.05)
        self.worker = process
        return process

    def stop_worker(self) -> None:
        if self.worker:
            self.worker.stop()
            self._processes.remove(self.worker)
            self.worker = None

    # --- data -----------------------------------------------------------------------

    def add_trigger(self, repository: str, clone_url: str, secret: str, image: str,
                    supersede: bool = True, default_branch: str = "main") -> dict[str, Any]:
        """A GitHub trigger with the default rules, written straight to the database."""
        spec = TriggerSpec(provider="github", repository=repository, clone_url=clone_url, secret=secret,
                           image=image, default_branch=default_branch, supersede=supersede)
        with self.sessions() as session:
            trigger = create_trigger(session, SecretBox(self.settings.secret_key), spec, self.settings.registry,
                                     allow_file_clones=self.settings.allow_file_clones)
            session.commit()
            result = {"id": trigger.id, "repository": repository, "clone_url": clone_url, "secret": secret,
                      "image": image, "rules": [rule.id for rule in trigger.rules]}
        self.track_image(f"{self.settings.registry}/{image}")
        return result

    def auth_headers(self) -> dict[str, str]:
        """Headers the API and pages need: an admin's bearer token when this version has sign-in."""
        if self._auth is None:
            try:
                from builder.accounts.users import add_user, create_token  # type: ignore[import-not-found]
            except ImportError:  # a version without sign-in: the API is open
                self._auth = {}
            else:
                with self.sessions() as session:
                    user = add_user(session, f"bench-{self.run_id}", uuid.uuid4().hex, "admin")
                    _row, token = create_token(session, user)
                    session.commit()
                self._auth = {"Authorization": f"Bearer {token}"}
        return self._auth

    def api(self) -> Web:
        """The running web app, with the API's auth headers."""
        assert self.web is not None, "start_web() first"
        return self.web.with_headers(self.auth_headers())

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read the database directly (read-only), e.g. to count deliveries."""
        conn = sqlite3.connect(f"file:{self.database_path}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    # --- docker images ---------------------------------------------------------------

    def track_image(self, repository: str) -> None:
        """Remove every local tag of ``repository`` when the stack closes."""
        self._images.add(repository)

    def _remove_images(self) -> None:
        """Remove the images of the tracked repositories: tagged ones, and older builds left with only a digest."""
        if not self._images:
            return
        try:
            import docker

            client = docker.from_env(timeout=60)
        except Exception:
            return

        def ours(reference: str) -> bool:
            name = reference.split("@", 1)[0]
            name = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
            return name in self._images

        try:
            # The summaries of one list call: ``client.images.list()`` inspects every image after
            # listing and fails when another session removes one in between.
            for image in client.api.images():
                references = list(image.get("RepoTags") or []) + list(image.get("RepoDigests") or [])
                references = [r for r in references if r != "<none>:<none>" and r != "<none>@<none>"]
                if not references or not all(ours(r) for r in references):
                    continue  # not only ours: never touch someone else's image
                for tag in image.get("RepoTags") or []:
                    with contextlib.suppress(Exception):
                        client.images.remove(tag, noprune=False)
                if not image.get("RepoTags"):
                    with contextlib.suppress(Exception):
                        client.images.remove(image["Id"], noprune=False)
        finally:
            client.close()


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    import platform
    import sqlite3 as sqlite_module

    def version(*command: str) -> str | None:
        try:
            result = subprocess.run(list(command), capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        text = (result.stdout or result.stderr).strip()
        return text.splitlines()[0] if text else None

    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "sqlite": sqlite_module.sqlite_version,
        "git": version("git", "--version"),
        "redis_server": version("redis-server", "--version"),
        "docker_registry": version("docker-registry", "--version"),
        "docker_server": version("docker", "version", "--format", "{{.Server.Version}}"),
        "docker_client": version("docker", "version", "--format", "{{.Client.Version}}"),
    }
    with contextlib.suppress(OSError, ValueError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["memory_gib"] = round(int(mem) / 1024 / 1024, 1)
    with contextlib.suppress(Exception):
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    with contextlib.suppress(Exception):
        from importlib.metadata import version as package_version

        info["packages"] = {name: package_version(name) for name in
                            ("flask", "gunicorn", "celery", "sqlalchemy", "docker", "gitpython")}
    with contextlib.suppress(Exception):
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                            capture_output=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, text=True,
                                capture_output=True, timeout=10).stdout.splitlines()
        changed = sorted(line[3:] for line in status
                         if not line[3:].startswith(("bench/", "tests/bench/")) and line[3:].endswith(".py"))
        info["working_tree_modified"] = bool(changed)
        info["modified_product_files"] = changed  # what was measured is HEAD plus these
    info["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return info
