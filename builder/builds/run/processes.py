"""A build attempt's local footprint: its work directory, and the git processes it started.

Each attempt works in ``build-<id>-<attempt>-<hex>`` under the work directory
(:func:`work_dir_name`; :func:`work_dir_attempt` reads it back, for the reaper's clean-up).
git runs as child processes of the worker; a timeout or a cancel must not wait for a fetch
that hangs. They are found through ``/proc`` (Linux) by their working directory.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from builder.builds.run.log import CancelCheck

_WORK_DIR = re.compile(r"build-(\d+)-(\d+)-[0-9a-f]+")


def work_dir_name(build_id: int, attempt: int) -> str:
    """``build-<id>-<attempt>-<hex>``: unique per attempt, found again by :func:`work_dir_attempt`."""
    return f"build-{build_id}-{attempt}-{uuid.uuid4().hex[:8]}"


def work_dir_attempt(name: str) -> tuple[int, int] | None:
    """The (build id, attempt) a work directory's ``name`` belongs to; None if it is no attempt's."""
    match = _WORK_DIR.fullmatch(name)
    return (int(match[1]), int(match[2])) if match else None


@contextmanager
def git_stopped_on(cancel: CancelCheck, workdir: Path) -> Iterator[None]:
    """While the block runs git in ``workdir``, a stop kills those git processes (and keeps killing
    any it starts next, e.g. the fallback fetch) until the block ends: a hung fetch is bounded too."""
    done = threading.Event()

    def keep_killing() -> None:
        while not done.is_set():
            kill_processes_in(workdir)
            done.wait(0.2)

    def abort() -> None:
        threading.Thread(target=keep_killing, name="git-killer", daemon=True).start()

    try:
        with cancel.aborting(abort):
            yield
    finally:
        done.set()


def kill_processes_in(directory: Path) -> int:
    """SIGKILL this process's descendants working in ``directory`` (git and what it started).

    Found through ``/proc`` (Linux): each descendant whose working directory is inside
    ``directory``, with all of its own descendants. Returns how many were signalled.
    """
    root = str(directory.resolve())
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue

    def descendants(pid: int) -> Iterator[int]:
        for child in children.get(pid, ()):
            yield child
            yield from descendants(child)

    doomed: set[int] = set()
    for pid in descendants(os.getpid()):
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cwd == root or cwd.startswith(root + os.sep):
            doomed.add(pid)
            doomed.update(descendants(pid))
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(doomed)
