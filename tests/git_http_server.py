"""A git smart-HTTP server on loopback that wants a token: ``git http-backend`` behind Basic auth."""

from __future__ import annotations

import base64
import hmac
import os
import subprocess
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote

import pytest

TOKEN = "glpat-S3cr3tT0kenValue-0123456789"
FORBIDDEN = "glpat-NoAccessT0ken-5555555555"


class GitHandler(BaseHTTPRequestHandler):
    server: "GitHttpServer"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        body = self._body()
        if self.server.redirect_to:
            return self._answer(302, {"Location": self.server.redirect_to + self.path}, b"")
        user, password = _basic(self.headers.get("Authorization", ""))
        self.server.attempts.append(password)
        if password is not None and hmac.compare_digest(password.encode(), FORBIDDEN.encode()):
            return self._answer(403, {}, b"forbidden\n")
        if password is None or not hmac.compare_digest(password.encode(), self.server.token.encode()):
            return self._answer(401, {"WWW-Authenticate": 'Basic realm="git"'}, b"")
        self.server.users.append(user)
        path, _, query = self.path.partition("?")
        env = {**os.environ, "GIT_PROJECT_ROOT": str(self.server.root), "GIT_HTTP_EXPORT_ALL": "1",
               "REQUEST_METHOD": self.command, "PATH_INFO": unquote(path), "QUERY_STRING": query,
               "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
               "REMOTE_USER": user or "", "REMOTE_ADDR": "127.0.0.1"}
        for name, value in self.headers.items():
            env["HTTP_" + name.upper().replace("-", "_")] = value
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True,
                             timeout=30, check=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")  # CGI headers end with CRLF CRLF
        status, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            else:
                headers[name] = value.strip()
        self._answer(status, headers, payload)

    do_POST = do_GET

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return data
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _basic(header: str) -> tuple[str | None, str | None]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    user, _, password = base64.b64decode(value).decode().partition(":")
    return user, password


class GitHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, token: str) -> None:
        super().__init__(("127.0.0.1", 0), GitHandler)
        self.root, self.token = root, token
        self.redirect_to = ""
        self.users: list[str | None] = []
        self.attempts: list[str | None] = []  # the passwords tried (None: no Authorization)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"


@contextmanager
def serving(root: Path) -> Iterator[GitHttpServer]:
    server = GitHttpServer(root, TOKEN)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def git_http(tmp_path) -> Iterator[GitHttpServer]:
    with serving(tmp_path) as server:
        yield server
