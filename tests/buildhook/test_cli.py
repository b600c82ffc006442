"""The ``buildhook`` command as a user runs it: serve on embedded defaults, triggers add/list."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from buildhook.redis_server import free_port
from tests.conftest import wait_for
from tests.payloads import github_headers, github_push

BUILDHOOK = str(Path(sys.executable).with_name("buildhook"))


def user_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A user's environment: nothing of buildhook's set but what the test names."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDHOOK_")}
    env.update({"BUILDHOOK_DATA_DIR": str(tmp_path / "data"), **extra})
    return env


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BUILDHOOK, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def http_json(url: str, data: bytes | None = None, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.load(response)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_serve_on_embedded_defaults_builds_a_github_push(tmp_path, registry, docker_client, make_repo):
    port = free_port()
    env = user_env(tmp_path, BUILDHOOK_REGISTRY=registry.host,
                   BUILDHOOK_PUBLIC_URL=f"http://127.0.0.1:{port}",
                   BUILDHOOK_ALLOW_FILE_CLONES="1")  # as the README says for a file:// repository
    stderr = tmp_path / "serve.err"
    serve = subprocess.Popen([BUILDHOOK, "serve", "--port", str(port)], env=env, cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=open(stderr, "wb"))
    try:
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return http_json(f"{base}/healthz")[1]["status"] == "ok"
            except OSError:
                return False

        wait_for(healthy, 60, "buildhook serve to answer")
        redis_port = int(re.search(r"redis://127\.0\.0\.1:(\d+)/0", stderr.read_text()).group(1))
        assert port_open(redis_port)

        repo = make_repo()
        added = run(["triggers", "add", "--provider", "github", "--repository", "acme/served",
                     "--clone-url", repo.url, "--secret", "cli-secret", "--image", "acme/served"],
                    env, tmp_path)
        assert added.returncode == 0, added.stderr
        assert f"{base}/hooks/github" in added.stdout
        users = run(["users", "add", "ops", "--role", "admin", "--password", "ops-password-1"], env, tmp_path)
        assert users.returncode == 0, users.stderr
        made = run(["tokens", "create", "--user", "ops"], env, tmp_path)
        assert made.returncode == 0, made.stderr
        auth = {"Authorization": f"Bearer {made.stdout.strip()}"}
        listed = run(["triggers", "list"], env, tmp_path)
        assert "acme/served" in listed.stdout and f"{base}/hooks/github" in listed.stdout
        assert "cli-secret" not in listed.stdout + added.stdout

        sha = repo.commit({"x.txt": "x"}, "served commit")
        payload = github_push("push_branch", repository="acme/served", ref="refs/heads/main", sha=sha,
                              clone_url=repo.url)
        body = json.dumps(payload).encode()
        with pytest.raises(urllib.error.HTTPError) as refused:
            http_json(f"{base}/api/builds")
        assert refused.value.code == 401, "the API needs sign-in"
        status, answer = http_json(f"{base}/hooks/github", body, github_headers(body, "cli-secret"))
        assert status == 202
        build_id = answer["builds"][0]

        def finished():
            build = http_json(f"{base}/api/builds/{build_id}", headers=auth)[1]
            return build if build["state"] in ("succeeded", "failed") else None

        build = wait_for(finished, 120, "the build to finish", interval=0.3)
        assert build["state"] == "succeeded", build["error"]
        assert registry.digest("acme/served", "latest") == build["digest"]
        with urllib.request.urlopen(urllib.request.Request(f"{base}/", headers=auth), timeout=10) as page:
            assert sha[:7] in page.read().decode()
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(40)
    assert not port_open(port)
    assert not port_open(redis_port), "the private redis-server must stop with buildhook serve"
    assert "cli-secret" not in stderr.read_text()


def test_serve_without_a_docker_engine_says_so(tmp_path):
    env = user_env(tmp_path, DOCKER_HOST=f"unix://{tmp_path}/no-such-docker.sock")
    result = subprocess.run([BUILDHOOK, "serve", "--port", str(free_port())], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "needs a running Docker Engine" in result.stderr
    assert "no-such-docker.sock" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--image", "Not A Valid/Name"], "not a valid repository name"),
    (["--image", "ok/name", "--provider", "svn"], "unknown provider"),
    (["--image", "ok/name", "--dockerfile", "../outside/Dockerfile"], "inside the repository"),
    (["--image", "ok/name", "--clone-url", "file:///srv/git/x.git"], "only with BUILDHOOK_ALLOW_FILE_CLONES=1"),
    (["--image", "ok/name", "--clone-url", "ext::sh -c touch% /tmp/x"], "ext:: transport, which is not allowed"),
])
def test_triggers_add_rejects_bad_input_with_a_clear_error(tmp_path, args, message):
    base = ["triggers", "add", "--provider", "github", "--repository", "acme/x", "--clone-url",
            "https://git.example.com/acme/x.git", "--secret", "s"]
    result = run(base + args, user_env(tmp_path), tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_web_keeps_query_string_tokens_out_of_its_access_log(tmp_path, service_env):
    """Registries that cannot send headers put the events token in ``?token=``: the access log shows
    ``token=****``, for a right token as for a wrong one, and the other secret-named parameters too."""
    port = free_port()
    log_path = tmp_path / "web.log"
    with open(log_path, "wb") as log_file:
        web = subprocess.Popen([BUILDHOOK, "web", "--port", str(port), "--workers", "1", "--threads", "2"],
                               env={**os.environ, **service_env}, stdout=log_file, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    right = service_env["BUILDHOOK_REGISTRY_EVENTS_TOKEN"]
    try:
        wait_for(lambda: web.poll() is not None or port_open(port), 60, "buildhook web to listen")
        body = json.dumps({"events": []}).encode()
        status, _answer = http_json(f"{base}/registry/events?token={right}", body,
                                    {"Content-Type": "application/json"})
        assert status == 202
        with pytest.raises(urllib.error.HTTPError) as refused:
            http_json(f"{base}/registry/events?Token=SECRET-wrong-1&x=1", body, {"Content-Type": "application/json"})
        assert refused.value.code == 401
        with pytest.raises(urllib.error.HTTPError):
            http_json(f"{base}/api/builds?access_token=SECRET-2&password=SECRET-3&limit=5",
                      headers={"Referer": f"{base}/?key=SECRET-4"})
        wait_for(lambda: log_path.read_text().count("/registry/events") >= 2 and "/api/builds" in log_path.read_text(),
                 10, "the access log lines")
    finally:
        web.terminate()
        web.wait(20)
    log = log_path.read_text()
    assert right not in log and "SECRET" not in log, log
    assert "POST /registry/events?token=**** HTTP/1.1" in log
    assert "/registry/events?Token=****&x=1" in log
    assert "/api/builds?access_token=****&password=****&limit=5" in log and "/?key=****" in log


def test_triggers_add_public_badge_makes_the_badge_public(tmp_path):
    base = ["triggers", "add", "--provider", "github", "--repository", "acme/badge", "--clone-url",
            "https://git.example.com/acme/badge.git", "--secret", "s", "--image", "acme/badge", "--json"]
    env = user_env(tmp_path)
    public = run(base + ["--public-badge"], env, tmp_path)
    assert public.returncode == 0, public.stderr
    assert json.loads(public.stdout)["public_badge"] is True
    private = run([*base[:5], "acme/private", *base[6:]], env, tmp_path)
    assert private.returncode == 0, private.stderr
    assert json.loads(private.stdout)["public_badge"] is False


def test_two_web_servers_of_one_user_run_side_by_side_without_a_control_socket(tmp_path, service_env):
    """gunicorn 27 opens a control socket at one path per user (~/.gunicorn/gunicorn.ctl): buildhook web
    turns it off, so a second server (another data directory, or the tests beside a running service)
    never takes over or removes the first one's."""
    env = {**os.environ, **service_env, "HOME": str(tmp_path)}
    ports = [free_port(), free_port()]
    webs = [subprocess.Popen([BUILDHOOK, "web", "--port", str(port), "--workers", "1", "--threads", "1"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT) for port in ports]
    try:
        for web, port in zip(webs, ports):
            wait_for(lambda: web.poll() is not None or port_open(port), 60, "buildhook web to listen")
            assert web.poll() is None
            assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).status == 200
    finally:
        for web in webs:
            web.terminate()
            web.wait(20)
    assert not (tmp_path / ".gunicorn").exists()
