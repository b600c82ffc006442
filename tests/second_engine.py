"""A second Docker Engine on this machine: another build host, with nothing in its image store.

``second_engine`` starts Debian's ``dockerd`` beside the machine's own, with its own data root,
exec root, pid file and unix socket under a temporary directory (no bridge, no iptables rules, as
the first runs), and stops it and removes everything it kept once the module's tests are done.
A worker whose ``DOCKER_HOST`` is ``second_engine.url`` builds there.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import docker
import pytest

from tests.conftest import wait_for


@dataclass
class SecondEngine:
    root: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"unix://{self.root / 'docker.sock'}"

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, timeout=60)

    def images(self) -> list[str]:
        with closing(self.client()) as client:
            return [image.id for image in client.images.list(all=True)]

    def clear(self) -> None:
        """Forget every image and BuildKit's local cache: as new as when it started."""
        with closing(self.client()) as client:
            for image in client.images.list(all=True):
                client.images.remove(image.id, force=True)
            client.api.prune_builds()

    def log(self) -> str:
        return (self.root / "dockerd.log").read_text(errors="replace")[-4000:]


def _answers(engine: SecondEngine) -> bool:
    if engine.process.poll() is not None:
        pytest.fail(f"the second dockerd exited:\n{engine.log()}")
    try:
        with closing(engine.client()) as client:
            return bool(client.ping())
    except docker.errors.DockerException:
        return False


@pytest.fixture(scope="module")
def second_engine() -> Iterator[SecondEngine]:
    binary = shutil.which("dockerd")
    if binary is None:
        pytest.fail("dockerd is not installed (apt-get install docker.io)")
    root = Path(tempfile.mkdtemp(prefix="bh-engine-", dir="/tmp"))  # short: a unix socket path is <= 107 bytes
    log = (root / "dockerd.log").open("wb")
    process = subprocess.Popen(
        [binary, "--bridge=none", "--iptables=false", "--ip-masq=false", "--data-root", str(root / "data"),
         "--exec-root", str(root / "exec"), "--pidfile", str(root / "dockerd.pid"),
         "-H", f"unix://{root / 'docker.sock'}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    engine = SecondEngine(root, process)
    try:
        wait_for(lambda: _answers(engine), 60, "the second Docker Engine to answer", interval=0.2)
        yield engine
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()
        subprocess.run(["umount", "-R", "-l", str(root / "data"), str(root / "exec")], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def empty_engine(second_engine: SecondEngine) -> Iterator[SecondEngine]:
    """The module's second engine, with no image and no build cache when the test starts."""
    second_engine.clear()
    yield second_engine
