"""A private Docker registry (Debian's ``docker-registry``) on loopback, for the embedded defaults.

Its notifications go back to buildhook's own ``/registry/events`` with a bearer token, so a push
reaches deploy rules without any registry configuration. The address is kept in the data
directory, so image names stay the same from one ``buildhook serve`` to the next; when another
program has taken that port since, the registry moves to a free port and keeps that one instead
(one an earlier, killed ``buildhook serve`` left running is stopped and its port kept).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

from buildhook.local_server import LocalServer, PortTaken, command_line, free_port, port_is_free

DEFAULT_PORT = 5000


def private_registry_address(data_dir: Path) -> str:
    """``127.0.0.1:PORT`` of the private registry: 5000 if it was free the first time, else another."""
    address_file = data_dir / "address"
    if address_file.exists():
        return address_file.read_text().strip()
    return pin_address(data_dir, DEFAULT_PORT if port_is_free(DEFAULT_PORT) else free_port())


def pin_address(data_dir: Path, port: int) -> str:
    """Keep ``127.0.0.1:PORT`` as the private registry's address, for this serve and the next."""
    data_dir.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{port}"
    (data_dir / "address").write_text(address + "\n")
    return address


def registry_config(data_dir: Path, port: int, events_url: str, events_token: str) -> str:
    return f"""# Written by buildhook serve: a private registry that notifies buildhook of every push.
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {data_dir / "data"}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
notifications:
  endpoints:
    - name: buildhook
      url: {events_url}
      headers:
        Authorization: [Bearer {events_token}]
      timeout: 2s
      threshold: 5
      backoff: 1s
"""


def _serves_config(pid: int) -> Path | None:
    """The config file (absolute) a ``docker-registry serve CONFIG`` process runs with, or None."""
    words = command_line(pid).split()
    if len(words) < 3 or words[-2] != "serve" or not words[0].endswith("docker-registry"):
        return None
    try:
        return (Path(os.readlink(f"/proc/{pid}/cwd")) / words[-1]).resolve()
    except OSError:
        return None


class RegistryServer(LocalServer):
    program = "docker-registry"
    package = "docker-registry"
    setting = "BUILDHOOK_REGISTRY"
    log_name = "registry.log"

    def __init__(self, data_dir: Path, events_url: str, events_token: str) -> None:
        port = int(private_registry_address(data_dir).rsplit(":", 1)[1])
        super().__init__(data_dir, port)
        self.events_url = events_url
        self.events_token = events_token

    @property
    def title(self) -> str:
        return "registry"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "config.yml"

    def command(self, binary: str) -> list[str]:
        # The file holds the events token: readable by its owner only.
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(registry_config(self.data_dir, self.port, self.events_url, self.events_token))
        return [binary, "serve", str(self.config_path.resolve())]  # absolute: how a leftover is told apart

    def answers(self) -> bool:
        with urllib.request.urlopen(f"http://{self.address}/v2/", timeout=0.5) as response:
            return response.status == 200

    def start(self, timeout: float = 10.0) -> "RegistryServer":
        """Start on the kept address; when another program has taken it, on a free port kept instead."""
        try:
            super().start(timeout)
        except PortTaken as taken:
            if not self._stop_an_earlier_one(taken.holders):
                self._move(taken)
            super().start(timeout)
        return self

    def _stop_an_earlier_one(self, holders: list[int]) -> bool:
        """Stop the registry an earlier ``buildhook serve`` of this directory left running (it was
        killed), which holds the port; say whether there was one."""
        ours = [pid for pid in holders if _serves_config(pid) == self.config_path.resolve()]
        for pid in ours:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while ours and not port_is_free(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        if ours:
            print(f"buildhook: stopped the private registry an earlier buildhook serve left running on "
                  f"{self.address} (pid {', '.join(map(str, ours))})", file=sys.stderr)
        return bool(ours)

    def _move(self, taken: PortTaken) -> None:
        before = self.address
        self.port = free_port()
        pin_address(self.data_dir, self.port)
        print(f"buildhook: {taken}. The private registry moves from {before} to {self.address} (kept in "
              f"{self.data_dir / 'address'}): images are named {self.address}/... from now on, and those "
              f"pushed before are in it under that name", file=sys.stderr)
