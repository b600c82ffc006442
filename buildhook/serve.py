"""``buildhook serve``: the web app and a worker, with a private Redis and registry when none is set.

The children are supervised: one that dies is started again (after a pause that doubles while it
keeps dying), so a worker killed by the kernel does not take the web app down with it. So are the
private Redis and registry; a registry that comes back on another port (another program took its
own) has the web app and the worker started again with its new address.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from builder.container import Container
from builder.db.engine import make_engine, make_sessionmaker
from builder.settings import Settings
from buildhook.local_server import LocalServer, ServerError
from buildhook.local_state import data_dir, local_env, publish_serve, running_serve, unpublish_serve
from buildhook.metrics_dir import clear_metrics_root
from buildhook.redis_server import RedisServer
from buildhook.registry_server import RegistryServer

RESTART_PAUSE_MAX = 30.0
STABLE_AFTER = 60.0  # a child that ran this long is healthy again: its next restart is immediate


@dataclass
class Child:
    """A command, or a private ``server`` (no ``argv``), which is started again by ``start``."""

    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    pause: float = 0.0
    started: float = 0.0
    restart_at: float | None = field(default=None)
    server: LocalServer | None = None

    def start(self) -> None:
        self.started = time.monotonic()
        self.restart_at = None
        if self.server is None:
            self.process = subprocess.Popen(self.argv, env=self.env)
            return
        self.server.stop()  # the one that died: closes its log
        try:
            self.process = self.server.start().process
        except (ServerError, OSError) as exc:
            print(f"buildhook: {exc}", file=sys.stderr)
            self.process = None
            self._schedule(time.monotonic(), "did not start")
            return
        print(f"buildhook: the {self.name} answers again on 127.0.0.1:{self.server.port}", file=sys.stderr)

    def check(self, now: float) -> None:
        """Notice a death and schedule the restart; restart when due."""
        if self.restart_at is not None:
            if now >= self.restart_at:
                print(f"buildhook: starting the {self.name} again", file=sys.stderr)
                self.start()
            return
        if self.process is None or self.process.poll() is None:
            return
        self._schedule(now, f"exited with {self.process.returncode}")

    def _schedule(self, now: float, what: str) -> None:
        healthy = now - self.started >= STABLE_AFTER
        self.pause = 0.0 if healthy else min(max(self.pause * 2, 1.0), RESTART_PAUSE_MAX)
        print(f"buildhook: the {self.name} {what}; restarting it in {self.pause:g} s", file=sys.stderr)
        self.restart_at = now + self.pause

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()

    def wait(self) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def cmd_serve(args: argparse.Namespace, container: Container) -> int:
    """``container``: the CLI's start-up made the secret key and brought the schema up to date."""
    from buildhook.cli import require_build_engine, require_docker

    env = local_env(create=True)
    env.setdefault("BUILDHOOK_LISTEN_ADDRESS", f"{args.host}:{args.port}")  # outbound targets may not point here
    local_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    local_host = f"[{local_host}]" if ":" in local_host else local_host  # an IPv6 literal in a URL
    env.setdefault("BUILDHOOK_PUBLIC_URL", f"http://{local_host}:{args.port}")  # webhook and build links
    settings = Settings.from_env(env)
    container.engine.dispose()  # the web app and the worker are processes of their own
    require_docker(settings)
    require_build_engine(settings, say=False)  # the worker says which engine builds
    directory = data_dir(env)
    running = running_serve(directory)
    if running is not None:  # its registry, Redis and metrics are in use: a second one would take them over
        raise ServerError(f"buildhook serve already runs for {directory} (pid {running['pid']}): stop it first, "
                          "or start this one in another directory (BUILDHOOK_DATA_DIR)")
    clear_metrics_root(directory)  # the web app and worker each make their group's metrics directory anew
    servers: list[LocalServer] = []
    try:
        _start_servers(args, env, settings, servers)
        publish_serve(directory, env.get("BUILDHOOK_BROKER_URL"), env["BUILDHOOK_PUBLIC_URL"])
        return _supervise(args, env, settings, servers)
    finally:
        unpublish_serve(directory)
        for server in reversed(servers):
            server.stop()


def _start_servers(args: argparse.Namespace, env: dict[str, str], settings: Settings,
                   servers: list[LocalServer]) -> None:
    """A private Redis and registry where none is set; each joins ``servers`` once it answers."""
    directory = data_dir(env)
    if not settings.broker_url:
        redis = RedisServer(directory / "redis", persistent=True)
        servers.append(redis.start())
        env["BUILDHOOK_BROKER_URL"] = redis.url
        print(f"buildhook: started a private redis-server at {redis.url} (queue kept in "
              f"{redis.data_dir})", file=sys.stderr)
    if not os.environ.get("BUILDHOOK_REGISTRY"):
        events_url = f"http://127.0.0.1:{args.port}/registry/events"
        registry = RegistryServer(directory / "registry", events_url, env["BUILDHOOK_REGISTRY_EVENTS_TOKEN"])
        kept = registry.address
        servers.append(registry.start())
        env["BUILDHOOK_REGISTRY"] = registry.address  # not the kept one if it had to move
        if registry.address != kept:
            _builds_follow(settings, kept, registry.address)
        print(f"buildhook: started a private registry at {registry.address}, notifying {events_url} "
              f"(log in {registry.log_path})", file=sys.stderr)


def _follow_the_registry(env: dict[str, str], settings: Settings, servers: list[LocalServer],
                         children: list[Child]) -> None:
    """The private registry came back on another port: start the web app and the worker again
    with its new address, so builds push to it and its notifications match."""
    registry = next((server for server in servers if isinstance(server, RegistryServer)), None)
    if registry is None or registry.process is None or env.get("BUILDHOOK_REGISTRY") == registry.address:
        return
    before, env["BUILDHOOK_REGISTRY"] = env.get("BUILDHOOK_REGISTRY"), registry.address
    print(f"buildhook: starting the web app and the worker again, to use the registry at {registry.address}",
          file=sys.stderr)
    for child in children:
        child.stop()
    if before:
        _builds_follow(settings, before, registry.address)


def _builds_follow(settings: Settings, old: str, new: str) -> None:
    """The builds queued (or under way) for the registry at ``old`` push to ``new`` instead."""
    from builder.builds.registry_move import follow_registry  # imports metrics: not before the CLI set their directory

    engine = make_engine(settings.database_url)
    try:
        moved = follow_registry(make_sessionmaker(engine), old, new)
    finally:
        engine.dispose()
    if moved:
        print(f"buildhook: {moved} unfinished build(s) named images at {old}: they push to {new} now",
              file=sys.stderr)


def _supervise(args: argparse.Namespace, env: dict[str, str], settings: Settings,
               servers: list[LocalServer]) -> int:
    me = [sys.executable, "-m", "buildhook.cli"]
    children = [
        Child("web app", me + ["web", "--host", args.host, "--port", str(args.port)], env),
        Child("worker", me + ["worker", "--concurrency", str(args.concurrency)], env),
    ]
    kept = [Child(server.title, [], env, process=server.process, started=time.monotonic(), server=server)
            for server in servers]
    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for child in children:
        child.start()
    print(f"buildhook: serving on http://{args.host}:{args.port}", file=sys.stderr)
    _first_admin_hint(settings, args)
    try:
        while not stopping.is_set():
            now = time.monotonic()
            for child in kept + children:
                child.check(now)
            _follow_the_registry(env, settings, servers, children)
            stopping.wait(0.5)
    finally:
        for child in children:
            child.stop()
        for child in children:
            child.wait()
    return 0


def _own_command() -> str:
    """How the person who started serve runs buildhook again: ``buildhook`` when that is on PATH."""
    if sys.argv[0].endswith(".py"):  # python -m buildhook.cli
        return f"{sys.executable} -m buildhook.cli"
    if shutil.which("buildhook") == os.path.abspath(sys.argv[0]):
        return "buildhook"
    return sys.argv[0]


def _first_admin_hint(settings: Settings, args: argparse.Namespace) -> None:
    """As Gitea and Jenkins do on first start: say how to make the first admin."""
    from sqlalchemy import func, select

    from builder.db.models import User

    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            users = connection.execute(select(func.count()).select_from(User)).scalar_one()
    finally:
        engine.dispose()
    if users:
        return
    command = _own_command()
    where = "" if not os.environ.get("BUILDHOOK_DATA_DIR") else f"BUILDHOOK_DATA_DIR={settings.data_dir} "
    print("\nbuildhook: no user yet. Create the first admin (you are asked for a password):\n\n"
          f"    {where}{command} users add admin --role admin\n\n"
          f"then sign in at http://{args.host}:{args.port}/login\n", file=sys.stderr)
