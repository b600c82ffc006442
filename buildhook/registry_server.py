"""A private Docker registry (Debian's ``docker-registry``) on loopback, for the embedded defaults.

Its notifications go back to buildhook's own ``/registry/events`` with a bearer token, so a push
reaches deploy rules without any registry configuration. The address is kept in the data
directory, so image names stay the same from one ``buildhook serve`` to the next.
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path
from typing import IO

from buildhook.local_server import LocalServer, free_port, port_is_free

DEFAULT_PORT = 5000


def private_registry_address(data_dir: Path) -> str:
    """``127.0.0.1:PORT`` of the private registry: 5000 if it was free the first time, else another."""
    address_file = data_dir / "address"
    if address_file.exists():
        return address_file.read_text().strip()
    port = DEFAULT_PORT if port_is_free(DEFAULT_PORT) else free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{port}"
    address_file.write_text(address + "\n")
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


class RegistryServer(LocalServer):
    program = "docker-registry"
    package = "docker-registry"
    setting = "BUILDHOOK_REGISTRY"

    def __init__(self, data_dir: Path, events_url: str, events_token: str) -> None:
        port = int(private_registry_address(data_dir).rsplit(":", 1)[1])
        super().__init__(data_dir, port)
        self.events_url = events_url
        self.events_token = events_token
        self._log: IO[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "registry.log"

    def command(self, binary: str) -> list[str]:
        config = self.data_dir / "config.yml"
        # The file holds the events token: readable by its owner only.
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(registry_config(self.data_dir, self.port, self.events_url, self.events_token))
        return [binary, "serve", str(config)]

    def output(self) -> IO[bytes]:
        self._log = open(self.log_path, "ab")
        return self._log

    def answers(self) -> bool:
        with urllib.request.urlopen(f"http://{self.address}/v2/", timeout=0.5) as response:
            return response.status == 200

    def stop(self) -> None:
        super().stop()
        if self._log:
            self._log.close()
            self._log = None
