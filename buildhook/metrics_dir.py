"""Where a process group keeps its Prometheus metrics (``prometheus_client`` multiprocess mode).

``buildhook web`` and ``buildhook worker`` each call ``use_metrics_dir`` first thing, before anything
imports ``prometheus_client`` (which picks its multiprocess mode from ``PROMETHEUS_MULTIPROC_DIR`` at
import): the group's directory is ``<data dir>/metrics/<web|worker>-<host>-<pid>``, made empty, and directories
of this host's groups whose process is gone are removed (their counters leave with them: a counter reset, which
Prometheus's ``rate()`` handles). ``GET /metrics`` merges every group's directory (``metrics_dirs``).
A ``PROMETHEUS_MULTIPROC_DIR`` set by the operator is used as it is, and not emptied.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

from buildhook.local_state import pid_alive

ENV = "PROMETHEUS_MULTIPROC_DIR"


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
    directory = root / f"{group}-{socket.gethostname()}-{os.getpid()}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    os.environ[ENV] = str(directory)
    return directory


def _remove_dead_groups(root: Path) -> None:
    """Remove this host's directories whose process is gone (another host's processes cannot be asked)."""
    host = socket.gethostname()
    for entry in root.iterdir():
        rest, _, pid = entry.name.rpartition("-")
        if entry.is_dir() and rest.endswith(f"-{host}") and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def metrics_dirs(data_dir: Path) -> list[Path]:
    """The directories ``GET /metrics`` merges: this group's and every group's under the data directory."""
    found = [Path(os.environ[ENV])] if os.environ.get(ENV) else []
    root = metrics_root(data_dir)
    if root.is_dir():
        found += sorted(entry for entry in root.iterdir() if entry.is_dir())
    unique: dict[str, Path] = {}
    for directory in found:
        unique.setdefault(str(directory.resolve()), directory)
    return list(unique.values())


def clear_metrics_root(data_dir: Path) -> None:
    """``buildhook serve`` at start: no group of an earlier run is left."""
    shutil.rmtree(metrics_root(data_dir), ignore_errors=True)
