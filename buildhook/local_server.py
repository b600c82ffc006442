"""A server program run privately on a free loopback port, for the embedded defaults."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import IO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class LocalServer:
    """Starts ``program`` and waits until ``answers()``; stops it on exit. Subclasses say how."""

    program = ""
    package = ""  # the Debian package that has ``program``, for the error message
    setting = ""  # the variable that points buildhook at a server of the operator's instead

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def command(self, binary: str) -> list[str]:
        raise NotImplementedError

    def answers(self) -> bool:
        raise NotImplementedError

    def output(self) -> IO[bytes] | int:
        return subprocess.DEVNULL

    def start(self, timeout: float = 10.0) -> "LocalServer":
        binary = shutil.which(self.program)
        if binary is None:
            raise RuntimeError(
                f"{self.program} is not installed: install it (Debian: apt-get install {self.package}) "
                f"or set {self.setting} to a running server"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self.command(binary), stdout=self.output(), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.program} exited with {self.process.returncode}")
            try:
                if self.answers():
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.program} did not answer on port {self.port}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
