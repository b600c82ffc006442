"""Per-process state of objects that own threads and locks, made new in a forked child.

A gunicorn or Celery pool worker is a fork of a process that may already have started
such an object's thread or taken its lock: in the child that thread does not exist and
that lock may stay taken forever. ``reset_after_fork`` has the object's own reset run in
the child, right after the fork (while it has one thread), instead of every call checking
the process id.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable


def reset_after_fork(reset: Callable[[], None]) -> None:
    """Call the bound method ``reset`` in every forked child (not once its object is gone)."""
    method = weakref.WeakMethod(reset)  # type: ignore[arg-type]

    def in_child() -> None:
        bound = method()
        if bound is not None:
            bound()

    os.register_at_fork(after_in_child=in_child)
