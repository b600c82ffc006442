"""``buildhook serve`` as a newcomer runs it: the whole loop on embedded defaults, a supervised
worker, other commands finding its private Redis, the first-admin hint, a queue kept on disk."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import redis

from buildhook.redis_server import RedisServer, free_port
from tests.buildhook.test_cli import BUILDHOOK, run, user_env
from tests.conftest import ROOT, wait_for


def test_serve_without_a_registry_runs_push_to_image_to_staging_deploy():
    """No BUILDHOOK_REGISTRY, no registry config: serve starts its own registry, whose
    notifications come back with a generated token and deploy the image to staging."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "smoke_test.py"), "--buildhook", BUILDHOOK],
                            capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "image 127.0.0.1:" in result.stdout
    assert "registry notification deployed it to staging" in result.stdout


def _children(pid: int) -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found[int(entry.name)] = cmdline
    return found


def _worker_pid(serve_pid: int) -> int | None:
    return next((pid for pid, cmd in _children(serve_pid).items() if "buildhook.cli worker" in cmd), None)


def test_serve_supervises_its_worker_and_shares_its_broker(tmp_path, registry, docker_client, make_repo):
    port = free_port()
    env = user_env(tmp_path, BUILDHOOK_REGISTRY=registry.host, BUILDHOOK_ALLOW_FILE_CLONES="1")
    stderr = tmp_path / "serve.err"
    output = stderr.open("w")
    serve = subprocess.Popen([BUILDHOOK, "serve", "--port", str(port)], env=env, cwd=tmp_path,
                             stdout=output, stderr=output)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(base), 60, "buildhook serve to answer")
        hint = stderr.read_text()
        assert "no user yet" in hint and "users add admin --role admin" in hint
        wait_for(lambda: re.search(r"\.> app:\s+buildhook:0x", stderr.read_text()), 30,
                 "the worker's banner to name the Celery app buildhook")
        assert stderr.read_text().count("images are built with") == 1, "said once, by the worker"

        first = wait_for(lambda: _worker_pid(serve.pid), 30, "the worker to start")
        os.kill(first, signal.SIGKILL)

        def new_worker() -> int | None:
            pid = _worker_pid(serve.pid)
            return pid if pid != first else None

        second = wait_for(new_worker, 30, "serve to start a new worker")
        assert serve.poll() is None and _healthy(base), "serve and its web app keep running"
        assert "the worker exited with -9; restarting it" in stderr.read_text()

        # `buildhook run` in the same directory finds serve's private Redis; the new worker builds.
        repo = make_repo("served")
        sha = repo.commit({"Dockerfile": "FROM scratch\nCOPY x /x\n", "x": "x"}, "for run")
        added = run(["triggers", "add", "--provider", "github", "--repository", "acme/run", "--clone-url", repo.url,
                     "--secret", "s", "--image", "acme/run", "--json"], env, tmp_path)
        assert added.returncode == 0, added.stderr
        assert json.loads(added.stdout)["webhook_url"] == f"{base}/hooks/github", "serve's port, not 8000"
        started = run(["run", str(json.loads(added.stdout)["id"]), "--branch", "main", "--json"], env, tmp_path)
        assert started.returncode == 0, started.stderr
        assert json.loads(started.stdout)["undispatched"] == [], "the build reached the broker at once"
        wait_for(lambda: sha[:7] in registry.tags("acme/run"), 90, "the image pushed by the restarted worker")
        assert _worker_pid(serve.pid) == second
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(40)


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_the_private_redis_keeps_its_queue_across_a_restart(tmp_path):
    port = free_port()
    with RedisServer(tmp_path / "redis", port=port, persistent=True) as server:
        redis.Redis.from_url(server.url).lpush("celery", b"build 7")
    with RedisServer(tmp_path / "redis", port=port, persistent=True) as server:
        assert redis.Redis.from_url(server.url).lrange("celery", 0, -1) == [b"build 7"]


def test_a_throwaway_redis_keeps_nothing(tmp_path):
    port = free_port()
    with RedisServer(tmp_path / "redis", port=port) as server:
        redis.Redis.from_url(server.url).lpush("celery", b"build 7")
    with RedisServer(tmp_path / "redis", port=port) as server:
        assert redis.Redis.from_url(server.url).lrange("celery", 0, -1) == []
