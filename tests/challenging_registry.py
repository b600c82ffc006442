"""A would-be registry on loopback that asks everyone for credentials and records what it gets.

It answers every request ``401`` with ``WWW-Authenticate: Basic``, the challenge after which
the Docker Engine (and any client) sends the credentials it holds for that host, and records
each request's method, path and ``Authorization`` header. Tests point buildhook at it and
check that no credentials arrive.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    authorization: str | None


class LoopbackServer:
    """An HTTP server on a free loopback port, serving ``handler`` from a thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class ChallengingRegistry(LoopbackServer):
    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _challenge(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with recorder._lock:
                    recorder.seen.append(Seen(self.command, self.path, self.headers.get("Authorization")))
                body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="challenging-registry"')
                self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _challenge

        super().__init__(Handler)

    def authorizations(self) -> list[str]:
        with self._lock:
            return [s.authorization for s in self.seen if s.authorization is not None]


@pytest.fixture
def challenging_registry() -> Iterator[ChallengingRegistry]:
    registry = ChallengingRegistry()
    yield registry
    registry.stop()
