"""``buildhook serve``'s private registry is the one it started: when another program took its
kept port it moves to a free one (and says so), and when it dies it is started again."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from builder.db.models import Build
from buildhook.local_server import PortTaken, ServerError, free_port, listens, port_is_free
from buildhook.redis_server import RedisServer
from buildhook.registry_server import RegistryServer, pin_address, private_registry_address
from buildhook.serve import _follow_the_registry
from tests.builder.builds.test_registry_move import build_in
from tests.buildhook.test_cli import BUILDHOOK, run, user_env
from tests.buildhook.test_serve import _children, _healthy
from tests.conftest import Registry, wait_for

EVENTS = "http://127.0.0.1:9/registry/events"  # nothing listens: the tests push no image to it


class ForeignRegistry:
    """Another program's registry on 127.0.0.1:``port``: answers ``200 {}`` to everything, as a
    registry's ``/v2/`` does, and records what it is asked."""

    def __init__(self, port: int) -> None:
        self.seen: list[str] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def answer(self) -> None:
                seen.append(f"{self.command} {self.path}")
                self.send_response(200)
                self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = answer

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class PlainListener:
    """A program that listens on 127.0.0.1:``port`` and never answers."""

    def __init__(self, port: int) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen()
        self.seen: list[str] = []

    def close(self) -> None:
        self._sock.close()


def _pinned_registry_dir(tmp_path: Path) -> tuple[Path, int]:
    directory = tmp_path / "registry"
    port = free_port()  # never 5000: other sessions on this machine may use it
    pin_address(directory, port)
    return directory, port


@pytest.mark.parametrize("foreign", [ForeignRegistry, PlainListener])
def test_a_registry_whose_kept_port_was_taken_moves_to_a_free_one(tmp_path, capsys, foreign):
    directory, kept = _pinned_registry_dir(tmp_path)
    other = foreign(kept)
    registry = RegistryServer(directory, EVENTS, "token")
    try:
        registry.start()
        assert registry.port != kept
        assert listens(registry.process.pid, registry.port), "our child answers, not the other program"
        assert private_registry_address(directory) == registry.address, "the new address is kept"
        said = capsys.readouterr().err
        assert f"127.0.0.1:{kept}, where docker-registry was to listen, is taken by another program (pid " \
               f"{os.getpid()}:" in said
        assert f"The private registry moves from 127.0.0.1:{kept} to {registry.address}" in said
        assert other.seen == [], "nothing was asked of the other program"
    finally:
        registry.stop()
        other.close()


def test_a_port_taken_while_the_registry_starts_is_noticed(tmp_path, capsys):
    """The race: the port was free when checked, and another registry took it before our child
    bound it. That one answers /v2/ at once; ours dies. ``start`` must not take its answer."""
    directory, kept = _pinned_registry_dir(tmp_path)
    others: list[ForeignRegistry] = []

    class Raced(RegistryServer):
        def command(self, binary: str) -> list[str]:
            if not others:
                others.append(ForeignRegistry(self.port))
            return super().command(binary)

    registry = Raced(directory, EVENTS, "token")
    try:
        registry.start()
        assert registry.port != kept and registry.process.poll() is None
        assert listens(registry.process.pid, registry.port)
        assert f"The private registry moves from 127.0.0.1:{kept} to {registry.address}" in capsys.readouterr().err
    finally:
        registry.stop()
        for other in others:
            other.close()


def test_a_registry_that_dies_at_start_says_where_and_why(tmp_path):
    directory, port = _pinned_registry_dir(tmp_path)
    broken = RegistryServer(directory, EVENTS, "token\nbroken: [")  # the config is no YAML any more
    with pytest.raises(ServerError) as error:
        broken.start()
    assert not isinstance(error.value, PortTaken)
    message = str(error.value)
    assert f"docker-registry exited with 1 at start, on 127.0.0.1:{port}" in message
    assert f"the end of its log, {directory / 'registry.log'}:" in message
    assert "configuration error: error parsing" in message


def test_a_redis_port_taken_is_an_error_naming_it(tmp_path):
    port = free_port()
    other = PlainListener(port)
    try:
        with pytest.raises(PortTaken, match=rf"127\.0\.0\.1:{port}, where redis-server was to listen, is taken "
                                            rf"by another program \(pid {os.getpid()}:"):
            RedisServer(tmp_path / "redis", port=port).start()
    finally:
        other.close()


def test_a_registry_left_running_by_a_killed_serve_is_stopped_and_its_port_kept(tmp_path, capsys):
    directory, kept = _pinned_registry_dir(tmp_path)
    earlier = RegistryServer(directory, EVENTS, "token").start()  # its serve was killed: it runs on
    registry = RegistryServer(directory, EVENTS, "token")
    try:
        orphan = earlier.process.pid
        registry.start()
        assert registry.port == kept and earlier.process.wait(5) is not None
        assert listens(registry.process.pid, kept)
        assert f"stopped the private registry an earlier buildhook serve left running on 127.0.0.1:{kept} " \
               f"(pid {orphan})" in capsys.readouterr().err
    finally:
        registry.stop()
        earlier.stop()


def test_another_projects_registry_with_the_same_relative_config_is_left_running(tmp_path, monkeypatch, capsys):
    """Two checkouts with the default data directory both run ``docker-registry serve
    .buildhook/registry/config.yml``: the one that holds our kept port is not ours to stop."""
    other_project, ours = tmp_path / "other", tmp_path / "ours"
    port = free_port()
    for project in (other_project, ours):
        pin_address(project / ".buildhook" / "registry", port)
    monkeypatch.chdir(other_project)
    theirs = RegistryServer(Path(".buildhook/registry"), EVENTS, "token").start()
    monkeypatch.chdir(ours)
    registry = RegistryServer(Path(".buildhook/registry"), EVENTS, "token")
    try:
        registry.start()
        assert theirs.process.poll() is None and listens(theirs.process.pid, port), "the other project's runs on"
        assert registry.port != port and listens(registry.process.pid, registry.port)
        assert "stopped the private registry" not in capsys.readouterr().err
    finally:
        registry.stop()
        theirs.stop()


def test_a_second_serve_in_the_same_directory_is_refused(tmp_path):
    serve, env, stderr, base = _serve(tmp_path)
    try:
        _wait_answering(serve, stderr, base)
        second = run(["serve", "--port", str(free_port())], env, tmp_path)
        assert second.returncode == 2
        assert f"buildhook serve already runs for {tmp_path / 'data'} (pid {serve.pid})" in second.stderr
        assert _healthy(base) and serve.poll() is None, "the first one runs on"
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(40)


# --- buildhook serve ------------------------------------------------------------------------


def _serve(tmp_path: Path) -> tuple[subprocess.Popen[bytes], dict[str, str], Path, str]:
    pinned = tmp_path / "data" / "registry" / "address"
    taken = pinned.read_text().strip() if pinned.exists() else ""
    port = free_port()
    while taken.endswith(f":{port}"):  # free now, but the registry's: the web app must not get it
        port = free_port()
    env = user_env(tmp_path, BUILDHOOK_ALLOW_FILE_CLONES="1")
    stderr = tmp_path / "serve.err"
    serve = subprocess.Popen([BUILDHOOK, "serve", "--port", str(port)], env=env, cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=stderr.open("w"))
    return serve, env, stderr, f"http://127.0.0.1:{port}"


def _wait_answering(serve: subprocess.Popen[bytes], stderr: Path, base: str, timeout: float = 90) -> None:
    """serve's web app answers; otherwise fail with what serve said (it may have exited)."""
    deadline = time.monotonic() + timeout
    while not _healthy(base):
        if serve.poll() is not None or time.monotonic() > deadline:
            state = f"exited with {serve.returncode}" if serve.returncode is not None else f"no answer in {timeout:g} s"
            raise AssertionError(f"buildhook serve: {state}; it said:\n{stderr.read_text()}")
        time.sleep(0.1)


def _registry_pid(serve_pid: int) -> int | None:
    return next((pid for pid, cmd in _children(serve_pid).items() if "docker-registry serve" in cmd), None)


def _kept_address(tmp_path: Path) -> str:
    return (tmp_path / "data" / "registry" / "address").read_text().strip()


def _build(tmp_path: Path, env: dict[str, str], make_repo, name: str) -> str:
    """Add a trigger and run it with ``buildhook run``, as a user does; the commit's short sha."""
    repo = make_repo(name=name)
    sha = repo.commit({"Dockerfile": "FROM scratch\nCOPY x /x\n", "x": name}, name)
    added = run(["triggers", "add", "--provider", "github", "--repository", f"acme/{name}", "--clone-url", repo.url,
                 "--secret", "s", "--image", f"acme/{name}", "--json"], env, tmp_path)
    assert added.returncode == 0, added.stderr
    started = run(["run", str(json.loads(added.stdout)["id"]), "--branch", "main", "--json"], env, tmp_path)
    assert started.returncode == 0, started.stderr
    return sha[:7]


def test_serve_moves_its_registry_off_a_taken_port_and_pushes_to_its_own(tmp_path, docker_client, make_repo):
    kept = free_port()
    pin_address(tmp_path / "data" / "registry", kept)  # an earlier serve's registry was there
    # a build queued while nothing served (no broker: it waits for a worker's relay), named at the kept address
    queued = _build(tmp_path, user_env(tmp_path, BUILDHOOK_ALLOW_FILE_CLONES="1"), make_repo, "queued")
    other = ForeignRegistry(kept)  # since then, another registry took the port
    serve, env, stderr, base = _serve(tmp_path)
    try:
        _wait_answering(serve, stderr, base)
        moved = _kept_address(tmp_path)
        said = stderr.read_text()
        assert moved != f"127.0.0.1:{kept}"
        assert f"127.0.0.1:{kept}, where docker-registry was to listen, is taken by another program" in said
        assert f"The private registry moves from 127.0.0.1:{kept} to {moved}" in said
        assert f"started a private registry at {moved}" in said

        assert f"buildhook: 1 unfinished build(s) named images at 127.0.0.1:{kept}: they push to {moved} now" in said
        short = _build(tmp_path, env, make_repo, "moved")
        wait_for(lambda: short in Registry(moved).tags("acme/moved"), 90, "the image in serve's own registry")
        wait_for(lambda: queued in Registry(moved).tags("acme/queued"), 90, "the build queued before, there too")
        assert other.seen == [], "nothing was pushed to (or asked of) the other registry"
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(40)
        other.close()


def test_when_the_registry_moves_while_serving_the_queued_builds_follow_it(app, client, settings, tmp_path):
    old = f"127.0.0.1:{free_port()}"
    trigger = client.post("/api/triggers", json={"provider": "github", "repository": "acme/follow", "secret": "s",
                                                 "clone_url": "https://example.test/x.git", "image": "acme/follow"})
    queued = build_in(app, trigger.json["id"], f"{old}/acme/follow", "queued")
    registry = RegistryServer(tmp_path / "registry", EVENTS, "token").start()  # it came back on another port
    try:
        env = {"BUILDHOOK_REGISTRY": old}
        _follow_the_registry(env, settings, [registry], [])
    finally:
        registry.stop()
    assert env["BUILDHOOK_REGISTRY"] == registry.address != old
    with app.extensions["buildhook"].sessions() as session:
        assert session.get(Build, queued).image == f"{registry.address}/acme/follow"


def test_serve_restarts_a_killed_registry_and_follows_it_to_a_new_port(tmp_path, docker_client, make_repo):
    port = free_port()
    address = pin_address(tmp_path / "data" / "registry", port)
    serve, env, stderr, base = _serve(tmp_path)
    others: list[ForeignRegistry] = []
    try:
        _wait_answering(serve, stderr, base)
        first = wait_for(lambda: _registry_pid(serve.pid), 30, "serve's registry")
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: f"the registry answers again on {address}" in stderr.read_text(), 30,
                 "serve to start its registry again")
        assert "the registry exited with -9; restarting it in 1 s" in stderr.read_text()
        second = _registry_pid(serve.pid)
        assert second != first and listens(second, port) and _kept_address(tmp_path) == address
        assert _is_registry(address)

        # Killed again; before serve starts it again (2 s later), another registry takes its port.
        os.kill(second, signal.SIGKILL)
        wait_for(lambda: port_is_free(port), 5, "the port to be released")
        others.append(ForeignRegistry(port))
        wait_for(lambda: "the registry exited with -9; restarting it in 2 s" in stderr.read_text(), 10,
                 "serve to notice")
        wait_for(lambda: _kept_address(tmp_path) != address, 30, "serve to move its registry")
        moved = _kept_address(tmp_path)
        said = wait_for(lambda: "starting the web app and the worker again" in stderr.read_text()
                        and stderr.read_text(), 30, "serve to restart the web app and the worker")
        assert f"The private registry moves from {address} to {moved}" in said
        assert f"to use the registry at {moved}" in said
        assert listens(_registry_pid(serve.pid), int(moved.rsplit(":", 1)[1]))

        wait_for(lambda: _healthy(base), 60, "the web app to answer again")
        short = _build(tmp_path, env, make_repo, "followed")
        wait_for(lambda: short in Registry(moved).tags("acme/followed"), 90, "the image in serve's moved registry")
        assert others[0].seen == [], "the restarted worker pushed to serve's registry, not to the other one"
        assert serve.poll() is None
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(40)
        for other in others:
            other.close()


def _is_registry(address: str) -> bool:
    try:
        Registry(address).tags("none")
        return True
    except OSError:
        return False
