"""A local HTTP server that answers the Git hosts' commit status endpoints, and records requests.

GitHub (``/api/v3``), GitLab (``/api/v4``), Bitbucket Cloud (``/2.0``), Bitbucket Data
Center (``/rest/build-status/1.0``) and Gitea (``/api/v1``) on one loopback port.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    json: Any


@dataclass
class FakeHost:
    """What the server saw, and what it should answer next."""

    url: str = ""
    requests: list[Seen] = field(default_factory=list)
    failures: list[tuple[int, str | None]] = field(default_factory=list)
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, code: int, times: int = 1, message: str | None = None) -> None:
        """Answer ``code`` to the next ``times`` requests, then succeed again."""
        self.failures.extend([(code, message)] * times)

    def posts(self) -> list[Seen]:
        return [r for r in self.requests if r.method == "POST"]


def _error_body(path: str, code: int, message: str) -> dict[str, Any]:
    """An error in the format of the host that owns ``path``."""
    if path.startswith("/2.0/"):
        return {"type": "error", "error": {"message": message}}
    if path.startswith("/rest/"):
        return {"errors": [{"context": None, "message": message, "exceptionName": None}]}
    if path.startswith("/api/v4/"):
        return {"message": f"{code} {message}"}
    return {"message": message, "documentation_url": "https://docs.example.com/rest"}


def _success(method: str, path: str, body: Any) -> tuple[int, Any]:
    body = body if isinstance(body, dict) else {}
    if method == "GET" and re.fullmatch(r"(/api/v3)?/repos/[^/]+/[^/]+", path):
        owner, name = path.rsplit("/", 2)[-2:]
        return 200, {"id": 1, "name": name, "full_name": f"{owner}/{name}",
                     "url": f"http://127.0.0.1{path}"}
    if method != "POST":
        return 404, {"message": "Not Found"}
    if path.startswith("/rest/build-status/1.0/commits/"):
        return 204, None  # Bitbucket Data Center answers No Content
    if "/statuses" in path:
        return 201, {"id": 7, "status": body.get("state"), **body, "created_at": "2024-01-01T00:00:00Z"}
    return 404, {"message": "Not Found"}


@pytest.fixture
def host() -> Iterator[FakeHost]:
    fake = FakeHost()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            with fake.lock:
                fake.requests.append(Seen(self.command, self.path, dict(self.headers.items()), body))
                failure = fake.failures.pop(0) if fake.failures else None
            if fake.delay:
                time.sleep(fake.delay)
            if failure is not None:
                code, message = failure
                reply: Any = _error_body(self.path, code, message or self.responses[code][0])
            else:
                code, reply = _success(self.command, self.path, body)
            data = json.dumps(reply).encode() if reply is not None else b""
            try:
                self.send_response(code)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up first (the timeout tests)
                pass

        do_GET = do_POST = do_PUT = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
