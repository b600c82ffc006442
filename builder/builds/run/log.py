"""Stream a build's log into the database while it runs, and watch the running build.

``BuildLog`` writes the log in small batches and enforces the log size limit.
``CancelCheck`` is the build's one watcher thread: it polls the row for a cancel
request, sends the worker's heartbeat, enforces the build timeout and flushes a
quiet log; any of these (or the log limit) stops the build the same way.
The heartbeat and the final write (``BuildLog.flush(fenced)``: the attempt's last lines
and its final state in one transaction) apply only while the row is still the attempt's
(``builder.builds.run.stops.Fence``).
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from types import TracebackType
from typing import Callable, Iterator

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from builder.builds.run.stops import BuildCancelled, Fence, Heartbeat, Stop, StopKind, Timeout
from builder.db.models import Build, BuildLogLine, utcnow

log = logging.getLogger(__name__)

MAX_LINE = 4000
_HARD_BATCH = 1000  # background mode: lines the build's thread writes itself (unless the last write failed)


def log_limit_message(limit: int) -> str:
    return f"log limit of {limit} bytes exceeded: build stopped"


Fenced = Callable[[Session], bool]  # the fenced final UPDATE, in the log's transaction: False if refused


class BuildLog:
    """Buffers lines and writes them in small batches, so readers see them live.

    With ``max_bytes`` (0: no limit) it counts the bytes written through it (lines plus
    newlines): one attempt's, as the pipeline makes one per attempt, so a retry starts
    with the whole limit. The line that would go past the limit is replaced by
    ``log_limit_message`` and every later line is dropped, and ``on_limit`` hears the
    message once (the watcher stops the build). Safe to call from the build's thread
    while the watcher thread flushes.

    A write that fails keeps its lines buffered for the next flush. In ``background`` mode
    calling it never raises because of the database: the watcher writes the lines once the
    database is back (the log limit bounds what is buffered meanwhile).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        build_id: int,
        flush_every: float = 0.5,
        batch: int = 50,
        masked: tuple[str, ...] = (),
        max_bytes: int = 0,
        on_limit: Callable[[str], None] | None = None,
        background: bool = False,
    ) -> None:
        self._sessions = sessions
        self._build_id = build_id
        self._flush_every = flush_every
        self._batch = batch
        self._masked = tuple(value for value in masked if value)
        self._buffer: list[str] = []
        self._last_flush = time.monotonic()
        self._lock = threading.RLock()  # the buffer
        self._write_lock = threading.Lock()  # one writer at a time, in order
        # With a watcher that calls ``flush_if_due`` (the pipeline's), the build's thread never
        # waits for the database: it only writes when the buffer grows past ``_HARD_BATCH``.
        self._background = background
        self._max_bytes = max_bytes
        self.on_limit = on_limit
        self.exceeded = False
        self.closed = False
        self._failing = False  # the last write failed: the build's thread leaves the next to the watcher
        self._seq = self._last_seq()
        self.bytes = 0  # this attempt's lines only

    def _last_seq(self) -> int:
        with self._sessions() as session:
            return session.scalar(
                select(func.max(BuildLogLine.seq)).where(BuildLogLine.build_id == self._build_id)) or 0

    def _clean(self, line: str) -> str:
        for value in self._masked:
            line = line.replace(value, "****")
        return line[:MAX_LINE]

    def __call__(self, line: str) -> None:
        line = self._clean(line)
        limited: str | None = None
        with self._lock:
            if self.exceeded or self.closed:
                return
            size = len(line.encode("utf-8", "replace")) + 1
            if self._max_bytes and self.bytes + size > self._max_bytes:
                self.exceeded = True
                limited = log_limit_message(self._max_bytes)
                line = limited
                size = len(line) + 1
            self._buffer.append(line)
            self.bytes += size
            if self._background:
                due = len(self._buffer) >= _HARD_BATCH and not self._failing
            else:
                due = len(self._buffer) >= self._batch or time.monotonic() - self._last_flush >= self._flush_every
        if limited is not None or due:
            if self._background:
                try:
                    self.flush()
                except SQLAlchemyError as exc:  # kept buffered: the watcher writes them
                    log.warning("build %s: could not write its log (kept for the next write): %s",
                                self._build_id, exc)
            else:
                self.flush()
        if limited is not None and self.on_limit is not None:
            self.on_limit(limited)

    def append(self, line: str) -> None:
        """Buffer ``line`` for the next write, with no write and no limit check (the attempt's last
        line, written with its final state); dropped once the limit was passed or the log closed."""
        line = self._clean(line)
        with self._lock:
            if not (self.exceeded or self.closed):
                self._buffer.append(line)

    def flush_if_due(self) -> None:
        """Write buffered lines that waited ``flush_every``; the watcher calls it, so the log shows
        live while the build's thread only reads the engine's stream."""
        with self._lock:
            due = bool(self._buffer) and time.monotonic() - self._last_flush >= self._flush_every
        if due:
            self.flush()

    def close(self) -> None:
        """Drop every later line (the build was taken from this worker)."""
        with self._lock:
            self.closed = True
            self._buffer = []

    def flush(self, fenced: Fenced | None = None) -> bool:
        """Write the buffered lines. With ``fenced`` (the attempt's final UPDATE), in the same
        transaction and only if it applies: False when it refused (nothing written, the lines
        stay buffered). A failed write keeps the lines buffered and raises."""
        with self._write_lock:
            with self._lock:
                self._last_flush = time.monotonic()
                if self.closed or (not self._buffer and fenced is None):
                    return fenced is None
                lines, self._buffer = self._buffer, []
            try:
                written = self._write(lines, fenced)
            except Exception:
                with self._lock:  # the database is busy or gone: keep them for the next flush
                    self._failing = True
                    if not self.closed:
                        self._buffer[:0] = lines
                raise
            with self._lock:
                self._failing = False
                if not written and not self.closed:
                    self._buffer[:0] = lines
            return written

    def _write(self, lines: list[str], fenced: Fenced | None) -> bool:
        for attempt in range(2):
            try:
                with self._sessions() as session:
                    if fenced is not None and not fenced(session):
                        session.rollback()
                        return False
                    for offset, text in enumerate(lines, 1):
                        session.add(BuildLogLine(build_id=self._build_id, seq=self._seq + offset, text=text))
                    session.commit()
                self._seq += len(lines)
                return True
            except IntegrityError:
                # Someone else wrote a line (the reaper, when it took the build): continue after it.
                self._seq = self._last_seq()
                if attempt:
                    raise
        raise AssertionError("unreachable")


class CancelCheck:
    """The watcher of a running build: cancel requests, heartbeats, the timeout, the log.

    Used as a context manager, it runs one thread for as long as the build runs. Every
    ``interval`` seconds it reads the build's row (a cancel request), checks the
    ``timeout``, and flushes the ``build_log`` when a step is quiet; every
    ``heartbeat.every`` seconds it records ``heartbeat_at``, only while the row is still
    this worker's attempt (else the build was reaped: it stops, ``StopKind.LOST``).
    A step that blocks (the engine's build or push stream, a git fetch) registers an
    ``abort`` with :meth:`aborting`; the first stop reason calls it once, so the blocked
    step ends. Between steps the pipeline calls :meth:`raise_if_requested`. Once stopped,
    it beats for ``heartbeat.wind_down`` seconds at most, then only looks whether the
    build was taken (``StopKind.LOST``: the log is closed, nothing more is written).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        build_id: int,
        interval: float = 0.5,
        heartbeat: Heartbeat | None = None,
        timeout: Timeout | None = None,
        build_log: BuildLog | None = None,
    ) -> None:
        self._sessions = sessions
        self._build_id = build_id
        self._interval = interval
        self._heartbeat = heartbeat
        self._timeout = timeout
        self._build_log = build_log
        self._requested = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._aborts: list[Callable[[], None]] = []
        self._thread: threading.Thread | None = None
        self._last_beat = time.monotonic()
        self._stopped_at = 0.0
        self._silent = False  # stopped, wound down too long: no more heartbeats
        self.stop_reason: Stop | None = None
        self.reason = "cancelled"

    def __enter__(self) -> CancelCheck:
        self._last_beat = time.monotonic()
        self._thread = threading.Thread(target=self._watch, name=f"build-watch-{self._build_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, _type: type[BaseException] | None, _exc: BaseException | None,
                 _tb: TracebackType | None) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def requested(self) -> bool:
        """Whether the build was stopped, as last seen (no database read)."""
        return self._requested.is_set()

    def check(self) -> bool:
        """Look now (the row, the clock); True when the build must stop."""
        if not self._requested.is_set():
            self._check_timeout()
        if not self._requested.is_set():
            self._poll()
        return self._requested.is_set()

    def raise_if_requested(self) -> None:
        if self.check():
            raise BuildCancelled(self.reason)

    def stop(self, kind: StopKind, message: str) -> None:
        """Stop the build for ``message``; the first reason wins, except that ``LOST`` (the row is
        no longer this attempt's) replaces any other. Calls the registered aborts."""
        if kind is StopKind.LOST and self._build_log is not None:
            self._build_log.close()  # first: not one more line once the build was taken
        with self._lock:
            if self._requested.is_set() and (kind is not StopKind.LOST or self.lost):
                return
            if not self._requested.is_set():
                self._stopped_at = time.monotonic()
            self.stop_reason = Stop(kind, message)
            self.reason = message
            self._requested.set()
            aborts, self._aborts = self._aborts, []
        for abort in aborts:
            _call(abort)

    @contextmanager
    def aborting(self, abort: Callable[[], None]) -> Iterator[None]:
        """While the block runs, a stop calls ``abort`` (at once if the build was stopped already)."""
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

    @property
    def lost(self) -> bool:
        return self.stop_reason is not None and self.stop_reason.kind is StopKind.LOST

    def _watch(self) -> None:
        while not self._stopped.wait(self._interval):
            if self._build_log is not None:
                try:
                    self._build_log.flush_if_due()
                except Exception as exc:  # the database is busy: the next flush writes them
                    log.warning("build %s: could not write its log: %s", self._build_id, exc)
            if self._heartbeat is not None and time.monotonic() - self._last_beat >= self._heartbeat.every:
                if not self._requested.is_set():
                    self._beat()
                elif not self.lost:
                    self._wind_down()
            if self._requested.is_set():
                continue
            self._check_timeout()
            if not self._requested.is_set():
                self._poll()

    def _wind_down(self) -> None:
        """Stopped: beat while the step ends, for ``heartbeat.wind_down`` seconds; then stay silent
        (the reaper takes the build) and only look whether it was taken."""
        assert self._heartbeat is not None
        if not self._silent and time.monotonic() - self._stopped_at < self._heartbeat.wind_down:
            self._beat()
            return
        if not self._silent:
            self._silent = True
            log.warning("build %s: stopped %.0f s ago (%s) and its step has not ended: no more heartbeats, "
                        "the reaper takes it", self._build_id, time.monotonic() - self._stopped_at, self.reason)
        self._last_beat = time.monotonic()  # look again in ``every`` seconds
        try:
            with self._sessions() as session:
                ours = session.scalar(select(Build.id).where(*self._fence().where()))
        except Exception as exc:  # the database is busy or away: look again later
            log.warning("build %s: could not read its row: %s", self._build_id, exc)
            return
        if ours is None:
            self.stop(StopKind.LOST, f"build {self._build_id} is no longer run by {self._heartbeat.worker} "
                                     "(it was reaped while its stopped step hung)")

    def _fence(self) -> Fence:
        assert self._heartbeat is not None
        return Fence(self._build_id, self._heartbeat.worker, self._heartbeat.attempt)

    def _check_timeout(self) -> None:
        if self._timeout is not None and time.monotonic() - self._timeout.started >= self._timeout.seconds:
            self.stop(StopKind.TIMED_OUT, self._timeout.message)

    def _beat(self) -> None:
        assert self._heartbeat is not None
        try:
            with self._sessions() as session:
                result = session.execute(update(Build).where(*self._fence().where()).values(heartbeat_at=utcnow()))
                session.commit()
        except Exception as exc:  # the database is busy or away: beat again at the next poll
            log.warning("build %s: could not record its heartbeat: %s", self._build_id, exc)
            return
        self._last_beat = time.monotonic()
        if result.rowcount != 1:  # the pipeline writes the final state after the watcher stopped
            self.stop(StopKind.LOST, f"build {self._build_id} is no longer run by {self._heartbeat.worker} "
                                     "(its heartbeat was missed and it was reaped)")

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
        self.stop(StopKind.CANCELLED, row.reason or "cancelled")


def _call(abort: Callable[[], None]) -> None:
    try:
        abort()
    except Exception:  # stopping is best effort: the pipeline still ends the build
        log.exception("aborting a stopped build's step failed")
