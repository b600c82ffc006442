#!/usr/bin/env python3
"""Smoke test of an installed buildhook, as a new user runs it: from an empty directory, on
embedded defaults (no BUILDHOOK_* variable but the two the README's "First build" sets).

    python3 scripts/smoke_test.py --buildhook /some/venv/bin/buildhook

It starts ``buildhook serve`` (private Redis and registry), checks ``/healthz`` and the sign-in
page with its assets, adds the first admin and an API token, a trigger for a local git repository
and a staging deploy rule, sends one signed GitHub push, and waits for the image in the private
registry and for the registry's notification to deploy it to staging. Exit status 0 when all held.
Only the standard library: it runs with any Python 3.11, outside the buildhook venv.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

SECRET = "smoke-webhook-secret"
PASSWORD = "correct-horse-battery-staple-42"


def step(text: str) -> None:
    print(f"smoke: {text}", flush=True)


def wait_for(what: str, check, timeout: float = 90.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise SystemExit(f"smoke: FAILED: timed out after {timeout:g} s waiting for {what}")


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_repository(root: Path) -> tuple[Path, str]:
    """A git repository whose Dockerfile builds FROM scratch with Debian's static busybox."""
    repo = root / "widget"
    repo.mkdir()
    shutil.copy("/bin/busybox", repo / "busybox")
    (repo / "Dockerfile").write_text('FROM scratch\nCOPY busybox /bin/busybox\nCMD ["/bin/busybox", "true"]\n')
    git = ["git", "-C", str(repo), "-c", "user.name=Smoke", "-c", "user.email=smoke@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "first"], check=True)
    sha = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    return repo, sha


class DeployReceiver(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        DeployReceiver.received.append(json.loads(body or b"{}"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--buildhook", default=shutil.which("buildhook"), help="the installed command")
    args = parser.parse_args()
    buildhook = str(Path(args.buildhook).resolve())
    root = Path(tempfile.mkdtemp(prefix="buildhook-smoke-"))
    workdir = root / "empty"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDHOOK_")}
    # The two settings the README's "First build" sets for a repository on disk and a receiver on loopback.
    env.update(BUILDHOOK_ALLOW_FILE_CLONES="1", BUILDHOOK_ALLOW_PRIVATE_TARGETS="127.0.0.1")
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    def cli(*words: str, stdin: str | None = None) -> str:
        done = subprocess.run([buildhook, *words], cwd=workdir, env=env, input=stdin, capture_output=True,
                              text=True, timeout=120)
        if done.returncode != 0:
            raise SystemExit(f"smoke: FAILED: buildhook {' '.join(words)}: {done.stderr.strip()}")
        return done.stdout

    serve_log = open(root / "serve.log", "w")
    serve = subprocess.Popen([buildhook, "serve", "--port", str(port)], cwd=workdir, env=env,
                             stdout=serve_log, stderr=subprocess.STDOUT, start_new_session=True)
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), DeployReceiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        run(cli, base, root, receiver.server_address[1])
        step("PASSED")
        return 0
    finally:
        receiver.shutdown()
        os.killpg(serve.pid, signal.SIGTERM)
        try:
            serve.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
        serve_log.close()
        if sys.exc_info()[0] is not None:
            print((root / "serve.log").read_text()[-6000:], file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def run(cli, base: str, root: Path, receiver_port: int) -> None:  # type: ignore[no-untyped-def]
    wait_for("/healthz to answer 200", lambda: get(f"{base}/healthz")[0] == 200)
    step("/healthz 200")
    status, page = get(f"{base}/login")
    assert status == 200, f"/login answered {status}"
    assets = re.findall(rb'(?:href|src)="(/static/[^"]+)"', page)
    assert assets, "the sign-in page links no static asset"
    for asset in assets:
        code, body = get(base + asset.decode())
        assert code == 200 and body, f"{asset.decode()} answered {code}"
    step(f"/login 200 with {len(assets)} assets")

    cli("users", "add", "admin", "--role", "admin", "--password", PASSWORD)
    token = cli("tokens", "add", "--user", "admin").strip()
    auth = {"Authorization": f"Bearer {token}"}
    assert get(f"{base}/api/builds", auth)[0] == 200, "the API refused the new token"
    step("first admin and API token")

    repo, sha = make_repository(root)
    cli("triggers", "add", "--provider", "github", "--repository", "acme/widget", "--clone-url",
        f"file://{repo}", "--secret", SECRET, "--image", "acme/widget")
    cli("deploy-rules", "add", "--repository", "acme/widget", "--tag", "main", "--environment", "staging",
        "--webhook-url", f"http://127.0.0.1:{receiver_port}/deploy")
    payload = json.dumps({
        "ref": "refs/heads/main", "before": "0" * 40, "after": sha, "created": True, "deleted": False,
        "repository": {"full_name": "acme/widget", "default_branch": "main"},
        "head_commit": {"id": sha, "message": "first", "author": {"name": "Smoke"}},
        "commits": [], "pusher": {"name": "smoke"},
    }).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()
    status, body = post(f"{base}/hooks/github", payload, {
        "Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": "smoke-1",
        "X-GitHub-Hook-ID": "1", "X-Hub-Signature-256": signature})
    assert status == 202, f"the push answered {status}: {body!r}"
    step("signed push accepted")

    def build_done():  # type: ignore[no-untyped-def]
        builds = json.loads(get(f"{base}/api/builds", auth)[1])["builds"]
        return builds and builds[0]["state"] in ("succeeded", "failed") and builds[0]

    build = wait_for("the build to finish", build_done, timeout=180)
    assert build["state"] == "succeeded", f"build {build['id']} {build['state']}: {build.get('error')}"
    registry = build["image"].split("/", 1)[0]
    tags = json.loads(get(f"http://{registry}/v2/acme/widget/tags/list")[1]).get("tags") or []
    assert "main" in tags, f"the registry has tags {tags}"
    step(f"image {build['image']}:main in the private registry ({build['digest']})")

    deploy = wait_for("the staging deployment webhook", lambda: DeployReceiver.received, timeout=60)[0]
    assert build["digest"] in json.dumps(deploy), f"the deployment names another image: {deploy}"
    step("registry notification deployed it to staging")


if __name__ == "__main__":
    sys.exit(main())
