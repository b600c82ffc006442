"""A private redis-server on a free loopback port, for the embedded defaults."""

from __future__ import annotations

import socket
from pathlib import Path

from buildhook.local_server import LocalServer, free_port

__all__ = ["RedisServer", "free_port"]


class RedisServer(LocalServer):
    """``persistent``: keep the queue in an append-only file in ``data_dir``, so messages handed to
    the broker survive its restart (``buildhook serve``); tests use a throwaway one."""

    program = "redis-server"
    package = "redis-server"
    setting = "BUILDHOOK_BROKER_URL"

    def __init__(self, data_dir: Path, port: int | None = None, persistent: bool = False) -> None:
        super().__init__(data_dir, port)
        self.persistent = persistent

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, binary: str) -> list[str]:
        return [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes" if self.persistent else "no", "--appendfsync", "everysec",
                "--dir", str(self.data_dir)]

    def answers(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
