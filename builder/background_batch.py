"""Work handed over by request threads and done together, a moment later, by one background thread.

The shape shared by the webhook path's deferred steps (``builder/builds/dispatcher.py`` sends
accepted builds to the broker, ``builder/builds/outbox.py``'s ``DispatchMarks`` writes their
``dispatched_at``): request threads ``add`` and return at once; a thread started on demand sleeps
``interval``, ``flush``es what was collected, and ends when nothing is left. A failed flush waits
twice as long before the next, up to five seconds. What is pending at interpreter exit is flushed
then; after a fork the child starts empty (the parent's thread and lock are not its own).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Sized
from typing import Generic, TypeVar

from builder.forks import reset_after_fork

log = logging.getLogger(__name__)

Pending = TypeVar("Pending", bound=Sized)


class BackgroundBatch(Generic[Pending]):
    """Subclasses say what a batch is (``_empty``), how to add to it and how to ``flush`` it."""

    thread_name = "background-batch"

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._reset()
        reset_after_fork(self._reset)
        atexit.register(self.flush)

    def _empty(self) -> Pending:
        raise NotImplementedError

    def flush(self) -> bool:
        """Do the work collected so far; False if it must be tried again (and was kept)."""
        raise NotImplementedError

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._pending: Pending = self._empty()
        self._thread: threading.Thread | None = None

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def _take(self) -> Pending:
        with self._lock:
            batch, self._pending = self._pending, self._empty()
        return batch

    def _ensure_thread(self) -> None:
        """Start the background thread if there is work and it is not running (lock held)."""
        if self._thread is None and self._pending:
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        delay = self._interval
        while True:
            time.sleep(delay)
            try:
                done = self.flush()
            except Exception:  # not expected: what the batch held is left to the recovery path
                log.exception("%s failed a batch", self.thread_name)
                done = True
            delay = self._interval if done else min(delay * 2, 5.0)
            with self._lock:
                if not self._pending:
                    self._thread = None
                    return
