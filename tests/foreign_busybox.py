"""Debian's static busybox for arm64, to put in test images of another platform, and binfmt_misc's qemu.

``arm64_busybox`` is the ``busybox-static:arm64`` package's ``/bin/busybox``, fetched once with
``apt-get download`` (``dpkg --add-architecture arm64`` and ``apt-get update`` first, when apt does
not know that architecture yet) and kept in a directory under the system's temporary directory,
so later sessions take it from there. It fails (never skips) when qemu's aarch64 emulator is not
registered in binfmt_misc: ``scripts/system-setup`` installs and registers it.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

CACHE = Path(tempfile.gettempdir()) / "buildhook-test-arm64"
EMULATOR = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")


def _run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=300)


def _download(into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    if "arm64" not in _run("dpkg", "--print-foreign-architectures").stdout.split():
        _run("dpkg", "--add-architecture", "arm64")
    fetched = _run("apt-get", "download", "busybox-static:arm64", cwd=into)
    if fetched.returncode != 0:  # apt has no arm64 package list yet
        _run("apt-get", "update", "-q")
        fetched = _run("apt-get", "download", "busybox-static:arm64", cwd=into)
    packages = sorted(into.glob("busybox-static_*_arm64.deb"))
    if fetched.returncode != 0 or not packages:
        pytest.fail(f"could not download busybox-static:arm64 with apt-get: {fetched.stderr.strip()}")
    _run("dpkg-deb", "-x", str(packages[-1]), str(into / "root"))
    return into / "root" / "bin" / "busybox"


@pytest.fixture(scope="session")
def arm64_busybox() -> Path:
    if not EMULATOR.exists() or "enabled" not in EMULATOR.read_text():
        pytest.fail("qemu-aarch64 is not registered in binfmt_misc: run scripts/system-setup as root "
                    "(it installs qemu-user-static and binfmt-support)")
    binary = CACHE / "root" / "bin" / "busybox"
    if not binary.exists():
        binary = _download(CACHE)
    if not binary.exists():
        pytest.fail("busybox-static:arm64 has no /bin/busybox")
    return binary
