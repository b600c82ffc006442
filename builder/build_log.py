"""Stream a build's log into the database while it runs, and notice a cancel request."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from types import TracebackType
from typing import Callable, Iterator

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from builder.errors import BuildhookError
from builder.models import Build, BuildLogLine

log = logging.getLogger(__name__)

MAX_LINE = 4000


class BuildLog:
    """Buffers lines and writes them in small batches, so readers see them live."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        build_id: int,
        flush_every: float = 0.5,
        batch: int = 50,
        masked: tuple[str, ...] = (),
    ) -> None:
        self._sessions = sessions
        self._build_id = build_id
        self._flush_every = flush_every
        self._batch = batch
        self._masked = tuple(value for value in masked if value)
        self._buffer: list[str] = []
        self._last_flush = time.monotonic()
        with sessions() as session:
            last = session.scalar(
                select(func.max(BuildLogLine.seq)).where(BuildLogLine.build_id == build_id)
            )
        self._seq = last or 0

    def __call__(self, line: str) -> None:
        for value in self._masked:
            line = line.replace(value, "****")
        self._buffer.append(line[:MAX_LINE])
        if len(self._buffer) >= self._batch or time.monotonic() - self._last_flush >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        lines, self._buffer = self._buffer, []
        with self._sessions() as session:
            for text in lines:
                self._seq += 1
                session.add(BuildLogLine(build_id=self._build_id, seq=self._seq, text=text))
            session.commit()


class BuildCancelled(BuildhookError):
    """Someone cancelled the build while it ran: neither a failure nor retried."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CancelCheck:
    """Whether someone asked to cancel a running build (``builds.cancel_requested_at``).

    Used as a context manager, it polls the build's row every ``interval`` seconds in a
    thread for as long as the build runs. A step that blocks (the engine's build or push
    stream) registers an ``abort`` with :meth:`aborting`; the polling thread calls it once
    when the request shows up, so the blocked step ends. Between steps the pipeline calls
    :meth:`raise_if_requested`, which reads the row right away.
    """

    def __init__(self, sessions: sessionmaker[Session], build_id: int, interval: float = 0.5) -> None:
        self._sessions = sessions
        self._build_id = build_id
        self._interval = interval
        self._requested = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._aborts: list[Callable[[], None]] = []
        self._thread: threading.Thread | None = None
        self.reason = "cancelled"

    def __enter__(self) -> CancelCheck:
        self._thread = threading.Thread(target=self._watch, name=f"cancel-check-{self._build_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, _type: type[BaseException] | None, _exc: BaseException | None,
                 _tb: TracebackType | None) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def requested(self) -> bool:
        """What the last poll saw (no database read)."""
        return self._requested.is_set()

    def check(self) -> bool:
        """Read the build's row now; True when a cancel was requested."""
        if not self._requested.is_set():
            self._poll()
        return self._requested.is_set()

    def raise_if_requested(self) -> None:
        if self.check():
            raise BuildCancelled(self.reason)

    @contextmanager
    def aborting(self, abort: Callable[[], None]) -> Iterator[None]:
        """While the block runs, a cancel request calls ``abort`` (at once if it came already)."""
        with self._lock:
            late = self._requested.is_set()
            if not late:
                self._aborts.append(abort)
        if late:
            _call(abort)
        try:
            yield
        finally:
            with self._lock:
                if abort in self._aborts:
                    self._aborts.remove(abort)

    def _watch(self) -> None:
        while not self._stopped.wait(self._interval):
            if self._requested.is_set():
                return
            self._poll()

    def _poll(self) -> None:
        try:
            with self._sessions() as session:
                row = session.execute(
                    select(Build.cancel_requested_at, Build.reason).where(Build.id == self._build_id)
                ).first()
        except Exception as exc:  # the database is busy or away: ask again at the next poll
            log.warning("build %s: could not read its cancel request: %s", self._build_id, exc)
            return
        if row is None or row.cancel_requested_at is None:
            return
        with self._lock:
            self.reason = row.reason or "cancelled"
            self._requested.set()
            aborts, self._aborts = self._aborts, []
        for abort in aborts:
            _call(abort)


def _call(abort: Callable[[], None]) -> None:
    try:
        abort()
    except Exception:  # stopping is best effort: the pipeline still ends the build as cancelled
        log.exception("aborting a cancelled build's step failed")
