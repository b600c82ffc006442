"""Engine and session factory, and schema migrations through Alembic."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from builder.errors import TransientError

MIGRATIONS = Path(__file__).parent / "migrations"

log = logging.getLogger(__name__)

# How long an SQLite connection waits for another one's write lock before "database is
# locked". ``?timeout=SECONDS`` in the database URL sets another (e.g. ``sqlite:///x.db?timeout=5``).
DEFAULT_BUSY_TIMEOUT = 30.0


def _busy_timeout(url: URL) -> float:
    return float(url.query.get("timeout", DEFAULT_BUSY_TIMEOUT))  # type: ignore[arg-type]


def make_engine(url: str, busy_timeout: float | None = None) -> Engine:
    if url.startswith("sqlite"):
        if busy_timeout is None:
            busy_timeout = _busy_timeout(make_url(url))
        engine = create_engine(url, connect_args={"timeout": busy_timeout})
        busy_ms = int(busy_timeout * 1000)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            # WAL: readers never wait for the writer. synchronous stays FULL (SQLite's default
            # in WAL mode too): a delivery answered 202 survives a power cut; NORMAL would save
            # about 0.3 ms of fsync per commit on these machines (measured), not worth that.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


# SQLite primary result codes that mean "not now": SQLITE_BUSY ("database is locked"),
# SQLITE_LOCKED ("database table is locked"), SQLITE_FULL (disk full), SQLITE_CANTOPEN.
_SQLITE_UNAVAILABLE_CODES = {5, 6, 13, 14}
_SQLITE_UNAVAILABLE_MESSAGES = ("database is locked", "database table is locked", "database or disk is full",
                                "unable to open database file")
# PostgreSQL SQLSTATEs: class 08 (connection exception), class 53 (insufficient resources:
# too many connections, disk full, out of memory), 57P01-57P03 (shutting down, crashed,
# starting up), and lock contention that a retry resolves (lock_not_available, serialization
# failure, deadlock), the counterpart of SQLite's "database is locked".
_PG_UNAVAILABLE_CLASSES = ("08", "53")
_PG_UNAVAILABLE_STATES = {"57P01", "57P02", "57P03", "55P03", "40001", "40P01"}


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database is unavailable for now (retry later), not a bug.

    Lost, refused or invalidated connections, a full connection pool, a locked SQLite
    file, a PostgreSQL server shutting down or out of connections are; a syntax error,
    a missing table or a constraint violation are not.
    """
    if isinstance(error, (PoolTimeout, WriteLockTimeout)):  # every pooled connection is busy; the lock stays taken
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    orig = error.orig
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        if code is not None:
            return (code & 0xFF) in _SQLITE_UNAVAILABLE_CODES
        return str(orig).startswith(_SQLITE_UNAVAILABLE_MESSAGES)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if state:
        return state[:2] in _PG_UNAVAILABLE_CLASSES or state in _PG_UNAVAILABLE_STATES
    # psycopg (and psycopg2) raise OperationalError without a SQLSTATE only for failures
    # on the client's side of the connection: refused, reset, closed by the server.
    module = type(orig).__module__ or ""
    return isinstance(error, OperationalError) and module.startswith(("psycopg", "psycopg2"))


# One lock per SQLite database file, for the short write transactions that many threads and
# processes run at once (webhook intake on several gunicorn workers). SQLite lets one writer in
# at a time; a connection that finds its lock taken sleeps in its busy handler (1, 2, 5, 10 ...
# up to 100 ms between tries) and does not wake when the lock is released, so writers that
# collide wait far longer than the transactions take: at 150-200 deliveries a second that sleep,
# not the CPU, was the limit. Queued on this lock instead (threads on a threading lock, which
# wakes the next one at once; processes on flock(2) of ``<database>.write-lock``, which the kernel
# hands to the next waiter the moment it is released, and releases if its holder dies), each
# writer starts as soon as the previous one commits.
class WriteLockTimeout(TransientError):
    """The SQLite write lock stayed taken for the database's busy timeout (``?timeout=``, default 30 s)."""


class SQLiteWriteLock:
    """An exclusive lock for one SQLite database file, across the threads and processes using it.

    Waits at most ``timeout`` seconds, as SQLite's own busy handler would, then raises
    ``WriteLockTimeout`` (answered 503). Re-entrant: the thread that holds it may take it again
    (a group commit holds it while it gathers a batch, then writes the batch under it).
    """

    def __init__(self, database: str, timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self._path = f"{database}.write-lock" if database and database != ":memory:" else None
        self._timeout = timeout
        self._lock = threading.RLock()
        self._depth = 0  # how many times the holding thread took it (read and written under _lock)
        self._fd: int | None = None
        self._waiter: _FlockWaiter | None = None  # the thread that waits for the flock of ``_fd``

    def after_fork(self) -> None:
        """In a forked child: the parent's threads and their holds are not the child's."""
        self._lock = threading.RLock()
        self._depth = 0
        self._waiter = None  # its thread is the parent's
        if self._fd is not None:
            try:
                os.close(self._fd)  # the child's copy only: a lock the parent holds stays held
            except OSError:
                pass
            self._fd = None

    def __enter__(self) -> SQLiteWriteLock:
        deadline = time.monotonic() + self._timeout
        if not self._lock.acquire(timeout=self._timeout):
            raise WriteLockTimeout(f"the database stayed locked for {self._timeout:g} s")
        if self._depth:  # this thread holds it already
            self._depth += 1
            return self
        try:
            if self._path is not None:
                self._flock(deadline)
        except OSError as exc:  # a read-only directory: threads still queue, processes use SQLite's wait
            log.warning("no cross-process write lock at %s (processes wait in SQLite instead): %s", self._path, exc)
            self._path = None
        except BaseException:
            self._lock.release()
            raise
        self._depth = 1
        return self

    def _flock(self, deadline: float) -> None:
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)  # type: ignore[arg-type]
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        # Another process holds it: wait in the kernel, which wakes the waiter the moment the
        # holder releases (polling for it overslept each release by up to a poll interval, and two
        # gunicorn workers hand it back and forth hundreds of times a second). A blocking flock
        # cannot give up, so it runs in a thread of its own (kept for the next wait); past the deadline
        # that thread is abandoned with this descriptor (it releases the lock and closes it when it gets it).
        try:
            if self._waiter is None or self._waiter.fd != self._fd:
                self._waiter = _FlockWaiter(self._fd)
            taken = self._waiter.wait(deadline - time.monotonic())
        except BaseException:  # the next wait starts afresh (an abandoned waiter closes the descriptor)
            if self._waiter is not None and self._waiter.abandoned:
                self._fd = None
            self._waiter = None
            raise
        if taken:
            return
        self._fd = self._waiter = None  # both abandoned: the waiter closes the descriptor
        raise WriteLockTimeout(f"the database stayed locked for {self._timeout:g} s "
                               "(another process holds its write lock)")

    def __exit__(self, *_exc: object) -> None:
        try:
            self._depth -= 1
            if not self._depth and self._path is not None and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()


class _FlockWaiter:
    """A thread that takes ``flock(fd, LOCK_EX)`` each time it is asked, waited for with a timeout.

    One per descriptor, kept for as long as the lock uses that descriptor: two gunicorn workers hand
    the lock back and forth hundreds of times a second, and starting a thread for each wait cost
    about 1 % of intake's CPU (bench/README.md). A wait that times out abandons the thread with its
    descriptor: when it gets the lock, it gives it back, closes the descriptor and ends. Idle for
    ``IDLE_SECONDS``, it ends too (the next wait starts it again).
    """

    IDLE_SECONDS = 60.0

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._ready = threading.Condition()
        self._asked = False
        self._taken = False
        self._abandoned = False
        self._error: OSError | None = None
        self._ended = False
        self._start()

    def _start(self) -> None:
        threading.Thread(target=self._run, name="sqlite-write-lock-wait", daemon=True).start()

    def _run(self) -> None:
        while True:
            with self._ready:
                if not self._ready.wait_for(lambda: self._asked, self.IDLE_SECONDS):
                    self._ended = True  # the next wait starts it again
                    return
            error: OSError | None = None
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX)
            except OSError as exc:
                error = exc
            with self._ready:
                self._asked = False
                if not self._abandoned:
                    self._taken, self._error = error is None, error
                    self._ready.notify_all()
                    if error is None:
                        continue
                    return  # the lock gives this descriptor up
            if error is None:  # got it for nobody: give it back
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            return

    @property
    def abandoned(self) -> bool:
        return self._abandoned

    def wait(self, timeout: float) -> bool:
        """True once the lock is taken; False (and this waiter abandoned) if ``timeout`` passes first."""
        with self._ready:
            if self._ended:
                self._start()  # raises if no thread can start: then this waiter stays ended
                self._ended = False
            self._taken, self._error, self._asked = False, None, True
            self._ready.notify_all()
            try:
                taken = self._ready.wait_for(lambda: self._taken or self._error is not None, max(timeout, 0))
            except BaseException:  # interrupted: nobody is left to hold what the thread takes
                if self._taken:
                    fcntl.flock(self.fd, fcntl.LOCK_UN)
                else:
                    self._abandoned = True
                raise
            if not taken:
                self._abandoned = True
                return False
            if self._error is not None:
                raise self._error
            return True


_WRITE_LOCKS: dict[tuple[str, float], SQLiteWriteLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_locks_after_fork() -> None:
    global _WRITE_LOCKS_GUARD
    _WRITE_LOCKS_GUARD = threading.Lock()
    for lock in _WRITE_LOCKS.values():
        lock.after_fork()


os.register_at_fork(after_in_child=_write_locks_after_fork)


def write_lock(session: Session | Connection | Engine) -> AbstractContextManager[object]:
    """Hold around a write transaction (first write to commit); a no-op except on SQLite."""
    url = session.get_bind().url if isinstance(session, Session) else session.engine.url
    if url.get_backend_name() != "sqlite":
        return nullcontext()
    # Per database file and busy timeout: two timeouts for one file get two objects, whose
    # holds still exclude each other through the lock file.
    key = (url.database or "", _busy_timeout(url))
    lock = _WRITE_LOCKS.get(key)
    if lock is None:
        with _WRITE_LOCKS_GUARD:
            lock = _WRITE_LOCKS.setdefault(key, SQLiteWriteLock(*key))
    return lock


@contextmanager
def write_transaction(sessions: sessionmaker[Session]) -> Iterator[Connection]:
    """A write transaction on a bare connection (no ORM session to set up for a few statements),
    under the database's write lock; committed when the block ends, rolled back if it raises."""
    engine = engine_of(sessions)
    with write_lock(engine), engine.begin() as connection:
        yield connection


Reader = Session | Connection
"""What a read takes: a session, or (webhook intake, which needs no ORM) a bare connection, cheaper to
check out and give back."""


def connection_of(reader: Reader) -> Connection:
    """The connection ``reader`` runs statements on (a session's, begun on first use)."""
    return reader if isinstance(reader, Connection) else reader.connection()


def engine_of(sessions: sessionmaker[Session]) -> Engine:
    """The engine ``sessions`` binds to (``make_sessionmaker``'s), for work that needs no ORM session."""
    return sessions.kw["bind"]  # type: ignore[no-any-return]


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str, secret_key: str | None = None) -> Config:
    """``secret_key``: for migrations that seal stored values (0011 seals outbound URLs)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["secret_key"] = secret_key
    return config


def migrate(url: str, secret_key: str | None = None) -> None:
    """Bring the database at ``url`` to the newest schema (``secret_key``: BUILDHOOK_SECRET_KEY,
    needed when existing rows are to be sealed)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url, secret_key), "head")
