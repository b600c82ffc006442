"""A server program run privately on a free loopback port, for the embedded defaults.

``start`` makes sure the server that answers is the one it started: the port must be free before
the child starts (else ``PortTaken``), and when the port answers, the child must be alive and hold
the listening socket. A child that dies at start is reported with its port and the end of its log.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

from builder.errors import BuildhookError

LOG_TAIL_LINES = 10


class ServerError(BuildhookError, RuntimeError):
    """A private server could not be started (the CLI prints the message, no traceback)."""


class PortTaken(ServerError):
    """Another program listens on the port the server was to listen on."""

    def __init__(self, port: int, program: str) -> None:
        self.port = port
        self.holders = listener_pids(port)
        who = "".join(f" (pid {pid}: {command_line(pid)})" for pid in self.holders)
        super().__init__(f"127.0.0.1:{port}, where {program} was to listen, is taken by another program{who}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Whether a server can listen on 127.0.0.1:``port``. With SO_REUSEADDR, as servers bind, so
    the closed connections of an earlier server (TIME_WAIT) do not count, only another listener."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _listening_inodes(port: int) -> set[str] | None:
    """The inodes of the sockets listening on ``port`` (any address); None without /proc."""
    inodes: set[str] = set()
    readable = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(fields[9])
    return inodes if readable else None


def _holds(pid: int, inodes: set[str]) -> bool | None:
    """Whether process ``pid`` has one of these sockets open; None when its descriptors are hidden."""
    directory = f"/proc/{pid}/fd"
    try:
        descriptors = os.listdir(directory)
    except OSError:
        return None
    for fd in descriptors:
        try:
            link = os.readlink(f"{directory}/{fd}")
        except OSError:  # closed meanwhile
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


def listens(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` holds the socket listening on ``port``; None when /proc cannot tell."""
    inodes = _listening_inodes(port)
    return None if inodes is None else _holds(pid, inodes)


def listener_pids(port: int) -> list[int]:
    """The processes listening on ``port``, of those whose descriptors this user may read."""
    inodes = _listening_inodes(port)
    if not inodes:
        return []
    pids = sorted(int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [pid for pid in pids if _holds(pid, inodes)]


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


class LocalServer:
    """Starts ``program`` and waits until ``answers()``; stops it on exit. Subclasses say how."""

    program = ""
    package = ""  # the Debian package that has ``program``, for the error message
    setting = ""  # the variable that points buildhook at a server of the operator's instead
    log_name = ""  # a file in ``data_dir`` that gets the server's output (none: it is discarded)

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_start = 0

    @property
    def title(self) -> str:
        """What ``buildhook serve`` calls it when it dies and is started again."""
        return self.program

    @property
    def log_path(self) -> Path | None:
        return self.data_dir / self.log_name if self.log_name else None

    def command(self, binary: str) -> list[str]:
        raise NotImplementedError

    def answers(self) -> bool:
        raise NotImplementedError

    def output(self) -> IO[bytes] | int:
        if self.log_path is None:
            return subprocess.DEVNULL
        self._log = open(self.log_path, "ab")
        self._log_start = self._log.tell()
        return self._log

    def start(self, timeout: float = 10.0) -> "LocalServer":
        binary = self._binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not port_is_free(self.port):
            raise PortTaken(self.port, self.program)
        self.process = subprocess.Popen(self.command(binary), stdout=self.output(), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._died()
            if self._answers() and listens(self.process.pid, self.port) is not False:
                return self  # the answer came from our child, not from a program that took the port
            time.sleep(0.05)
        tail = self.log_tail()
        self.stop()
        raise ServerError(f"{self.program} did not answer on 127.0.0.1:{self.port} within {timeout:g} s{tail}")

    def _binary(self) -> str:
        binary = shutil.which(self.program)
        if binary is None:
            raise ServerError(
                f"{self.program} is not installed: install it (Debian: apt-get install {self.package}) "
                f"or set {self.setting} to a running server"
            )
        return binary

    def _answers(self) -> bool:
        try:
            return self.answers()
        except OSError:
            return False

    def _died(self) -> None:
        assert self.process is not None
        code, tail = self.process.returncode, self.log_tail()
        self.stop()
        if not port_is_free(self.port):  # it lost the port to another program that took it meanwhile
            raise PortTaken(self.port, self.program)
        raise ServerError(f"{self.program} exited with {code} at start, on 127.0.0.1:{self.port}{tail}")

    def log_tail(self) -> str:
        """The end of what the server wrote since it was started, to put after an error message."""
        if self.log_path is None or self._log is None:
            return ""
        self._log.flush()
        with open(self.log_path, "rb") as log:
            log.seek(self._log_start)
            lines = [line for line in log.read().decode(errors="replace").splitlines() if line.strip()]
        lines = lines[-LOG_TAIL_LINES:]
        shown = "".join(f"\n    {line}" for line in lines) or " (empty)"
        return f"; the end of its log, {self.log_path}:{shown}"

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
