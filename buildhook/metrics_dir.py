"""Where a process group keeps its Prometheus metrics (``prometheus_client`` multiprocess mode).

``buildhook web`` and ``buildhook worker`` each call ``use_metrics_dir`` first thing, before anything
imports ``prometheus_client`` (which picks its multiprocess mode from ``PROMETHEUS_MULTIPROC_DIR`` at
import). The group's directory is new and its own: ``<data dir>/metrics/<web|worker>-<host>-<pid>-<random id>``.
Neither the host name nor the pid tells two processes apart: containers of one scaled service share a fixed
host name (docker-compose.yml's ``hostname:``) and each is pid 1 in its own pid namespace.

The group's process holds an exclusive lock (``flock``) on its directory's ``owner.lock`` for as long as it,
or a child it forked (gunicorn's and Celery's workers), runs; the kernel lets go of it however they end. A
directory is made under a hidden name, locked, then renamed into place, so no directory is ever seen unlocked
while its process lives. At start, a group removes the directories of its host name whose lock it can take:
their processes are gone (their counters leave with them: a counter reset, which Prometheus's ``rate()``
handles). A directory whose lock is held is never touched, nor one of another host name (a network file
system may not share locks between machines). A directory of an earlier buildhook, without ``owner.lock``
(``<group>-<host>-<pid>``), is removed when no process of its pid runs here.
``GET /metrics`` merges every group's directory (``metrics_dirs``).
A ``PROMETHEUS_MULTIPROC_DIR`` set by the operator is used as it is, and not emptied.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import socket
import sys
from pathlib import Path

from buildhook.local_state import pid_alive

ENV = "PROMETHEUS_MULTIPROC_DIR"
OWNER_LOCK = "owner.lock"  # held (flock) while the directory's process group runs
STAGING_PREFIX = "."  # a directory being made: not a group's yet

_held_locks: list[int] = []  # this process's lock descriptors: open for as long as the process lives


def metrics_root(data_dir: Path) -> Path:
    return data_dir / "metrics"


def use_metrics_dir(data_dir: Path, group: str) -> Path:
    """Set ``PROMETHEUS_MULTIPROC_DIR`` for this process and its children; return the directory."""
    if "prometheus_client.values" in sys.modules and not os.environ.get(ENV):
        raise RuntimeError("prometheus_client was imported before the metrics directory was set")
    if os.environ.get(ENV):
        directory = Path(os.environ[ENV])
        directory.mkdir(parents=True, exist_ok=True)
        return directory
    root = metrics_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    _remove_dead_groups(root)
    directory = _make_locked_dir(root, f"{group}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}")
    os.environ[ENV] = str(directory)
    return directory


def _make_locked_dir(root: Path, name: str) -> Path:
    """``root/name``, empty, appearing only once this process holds its lock."""
    staging = root / f"{STAGING_PREFIX}{name}"
    staging.mkdir()
    fd = os.open(staging / OWNER_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a file system without locks: the directory stays, nobody can tell it is dead
        pass
    os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
    _held_locks.append(fd)
    directory = root / name
    staging.rename(directory)
    return directory


def _remove_dead_groups(root: Path) -> None:
    """Remove this host name's directories whose process group is gone."""
    host = socket.gethostname()
    for entry in root.iterdir():
        if entry.name.startswith(STAGING_PREFIX) or not entry.is_dir():
            continue
        lock = entry / OWNER_LOCK
        if lock.exists():
            if _owner_host(lock) == host:
                _remove_if_unlocked(entry)
            continue
        rest, _, pid = entry.name.rpartition("-")  # an earlier buildhook's <group>-<host>-<pid>
        if rest.endswith(f"-{host}") and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _owner_host(lock: Path) -> str | None:
    """The host name ``owner.lock`` names (it holds "<host> <pid>")."""
    try:
        words = lock.read_text().split()
    except OSError:
        return None
    return words[0] if words else None


def _remove_if_unlocked(directory: Path) -> None:
    try:
        fd = os.open(directory / OWNER_LOCK, os.O_RDWR)
    except OSError:  # removed meanwhile by another group starting
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held: its process runs (or the file system cannot say)
        os.close(fd)
        return
    try:
        shutil.rmtree(directory, ignore_errors=True)
    finally:
        os.close(fd)


def metrics_dirs(data_dir: Path) -> list[Path]:
    """The directories ``GET /metrics`` merges: this group's and every group's under the data directory."""
    found = [Path(os.environ[ENV])] if os.environ.get(ENV) else []
    root = metrics_root(data_dir)
    if root.is_dir():
        found += sorted(entry for entry in root.iterdir()
                        if entry.is_dir() and not entry.name.startswith(STAGING_PREFIX))
    unique: dict[str, Path] = {}
    for directory in found:
        unique.setdefault(str(directory.resolve()), directory)
    return list(unique.values())


def clear_metrics_root(data_dir: Path) -> None:
    """``buildhook serve`` at start: no group of an earlier run is left (a live group's stays: a worker
    started on its own beside it)."""
    root = metrics_root(data_dir)
    if root.is_dir():
        _remove_dead_groups(root)
