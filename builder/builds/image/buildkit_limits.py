"""Memory and CPU caps for BuildKit builds: the engine's BuildKit cgroup, shared by all its builds.

dockerd 20.10 runs BuildKit's steps with runc in ``<cgroup parent>/buildkit/<id>`` (the parent is
``docker`` with the cgroupfs driver) and ignores a build's ``--memory``, ``--cpu-quota`` and
``--cgroup-parent`` (measured: a step allocating 200 MB passed a 64 MB ``--memory``). A limit on
that ``buildkit`` cgroup holds for every step below it: the kernel charges each step to it, and a
step that needs more than is left is killed (measured: the same step is killed under a 64 MB cap).
So the cap is the engine's, shared by every BuildKit build it runs at once, not one per build
(``BUILDHOOK_BUILD_ENGINE=classic`` keeps per-step limits). It can only be set by a worker on the
engine's host with write access to ``/sys/fs/cgroup`` (root); elsewhere the log says it is not held.
"""

from __future__ import annotations

import errno
from pathlib import Path

from builder.builds.image.context import CPU_PERIOD_US, BuildLimits

CGROUP_ROOT = Path("/sys/fs/cgroup")
UNLIMITED_V1 = "-1"


def apply_cap(limits: BuildLimits, cgroup: str, local: bool, root: Path = CGROUP_ROOT) -> str:
    """Set ``limits.memory`` and ``limits.cpus`` on the engine's BuildKit cgroup; what holds, for the log."""
    where = f"cgroup {cgroup}"
    if not local:
        return "; memory and CPU not enforced: the engine is on another host (BuildKit ignores per-build limits)"
    try:
        if (root / "cgroup.controllers").exists():
            _apply_v2(limits, root / cgroup)
        else:
            _apply_v1(limits, root, cgroup)
    except OSError as exc:
        reason = "no permission (the worker is not root)" if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) \
            else exc.strerror or str(exc)
        return f"; memory and CPU not enforced: could not set them on the engine's {where}: {reason}"
    return f" (BuildKit: one cap shared by all builds of this engine, {where})"


def _apply_v1(limits: BuildLimits, root: Path, cgroup: str) -> None:
    memory = root / "memory" / cgroup
    memory.mkdir(parents=True, exist_ok=True)
    value = str(limits.memory) if limits.memory else UNLIMITED_V1
    swap = memory / "memory.memsw.limit_in_bytes"  # memory + swap: absent without swap accounting
    if swap.exists():
        swap.write_text(UNLIMITED_V1)  # memory may never exceed memory + swap: open that first
    (memory / "memory.limit_in_bytes").write_text(value)
    if swap.exists():
        swap.write_text(value)
    cpu = root / "cpu" / cgroup
    cpu.mkdir(parents=True, exist_ok=True)
    (cpu / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
    (cpu / "cpu.cfs_quota_us").write_text(str(round(limits.cpus * CPU_PERIOD_US)) if limits.cpus else UNLIMITED_V1)


def _apply_v2(limits: BuildLimits, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "memory.max").write_text(str(limits.memory) if limits.memory else "max")
    if (path / "memory.swap.max").exists():
        (path / "memory.swap.max").write_text("0" if limits.memory else "max")
    quota = str(round(limits.cpus * CPU_PERIOD_US)) if limits.cpus else "max"
    (path / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")


def oom_kills() -> int | None:
    """The kernel's count of processes killed for memory so far (``/proc/vmstat``), if readable."""
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        return None
    return None
