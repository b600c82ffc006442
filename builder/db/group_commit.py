"""Group commit: the write transactions of concurrent webhook deliveries, one commit for many.

SQLite lets one writer in at a time, and each commit waits for its fsync. When every
request thread ran its own transaction, the database's write lock was held about 3.5 ms
per delivery (the fsync, and the wait for the GIL between statements) and at 200
deliveries a second it was busy most of the time: requests queued for it, not for the CPU.
A ``GroupCommit`` takes the writes that request threads hand it and runs each batch of them
in one transaction from one thread: one lock, one fsync for everything that arrived
meanwhile. It waits for the database's write lock before it takes its batch, so the
deliveries that arrive while another process (another gunicorn worker) writes join it. A
request still answers only once its own rows are committed.

A replay of a delivery accepted before (in an earlier transaction or earlier in the batch)
inserts nothing (``ON CONFLICT (dedupe_key) DO NOTHING``) and is marked a duplicate; it fails
nothing. If the batch fails because of one of its writes (a trigger deleted meanwhile), it is
rolled back and each delivery is written again on its own, so one bad write never fails
another; if the database is unavailable (locked past its timeout, gone), every write of the
batch gets that error at once. The errors reach the requests that made them: an unavailable
database is answered 503, anything else 500 (the Git host retries either).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from builder.db.engine import database_unavailable, engine_of, write_lock, write_transaction
from builder.forks import reset_after_fork
from builder.db.models import Build, Delivery, DeliveryRequest
from builder.db.prepared import Inserts
from builder.intake.planning import Plan, supersede

log = logging.getLogger(__name__)

# Compiled once per dialect and set of columns (``builder/db/prepared.py``): these run while the
# database's write lock is held, and ``Connection.execute``'s own work took longer than SQLite's.
_INSERT_BUILD = Inserts(Build.__table__, lambda insert: insert.returning(Build.__table__.c.id))
_INSERT_REQUEST = Inserts(DeliveryRequest.__table__)
# A delivery whose dedupe key was accepted before (committed, or earlier in this transaction)
# inserts nothing and returns no id: a replay is a duplicate without failing the transaction.
_INSERT_DELIVERY = {
    name: Inserts(Delivery.__table__, lambda insert: insert.on_conflict_do_nothing(index_elements=["dedupe_key"])
                  .returning(Delivery.__table__.c.id), dialect.insert)
    for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql))
}


@dataclass(eq=False)
class DeliveryWrite:
    """One accepted delivery's rows: the superseding its plans do, the delivery, its builds."""

    plans: list[Plan]
    now: datetime
    delivery: dict[str, Any]
    builds: list[dict[str, Any]]
    request: dict[str, Any] | None = None  # its headers and body (builder/intake/delivery_requests.py)
    # Set once written:
    delivery_id: int | None = None
    build_ids: list[int] = field(default_factory=list)
    duplicate: bool = False  # a delivery with this dedupe key was accepted before: nothing written
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


def write_deliveries(connection: Connection, writes: list[DeliveryWrite]) -> None:
    """Run ``writes`` in ``connection``'s transaction (not committed).

    A write whose dedupe key was accepted before, in an earlier transaction or earlier in
    ``writes``, writes nothing and is marked a duplicate (it supersedes nothing either). A
    write the database refuses otherwise (a trigger deleted meanwhile) raises.
    """
    insert_delivery = _INSERT_DELIVERY[connection.dialect.name]
    requests = []
    for write in writes:
        found = insert_delivery.rows(connection, write.delivery)
        write.delivery_id = found[0][0] if found else None
        write.duplicate = write.delivery_id is None
        if write.duplicate:
            continue
        if write.request is not None:
            requests.append({**write.request, "delivery_id": write.delivery_id})
        for plan in write.plans:
            supersede(connection, plan, write.now)
        write.build_ids = [_INSERT_BUILD.rows(connection, values)[0][0]
                           for values in ({**row, "delivery_id": write.delivery_id} for row in write.builds)]
    if requests:
        _INSERT_REQUEST.many(connection, requests)


class GroupCommit:
    """Writes ``DeliveryWrite``s handed over by many threads, a batch per transaction, from one thread.

    ``commit`` blocks until the write is committed (or has failed: its error is raised).
    The writer thread starts on first use and ends when idle; a forked child (a gunicorn
    worker) starts its own.
    """

    def __init__(self, sessions: sessionmaker[Session], max_batch: int = 100,
                 idle_seconds: float = 5.0) -> None:
        self._sessions = sessions
        self._max_batch = max_batch
        self._idle_seconds = idle_seconds
        self._reset()
        reset_after_fork(self._reset)

    def _reset(self) -> None:
        self._ready = threading.Condition()
        self._queue: list[DeliveryWrite] = []
        self._thread: threading.Thread | None = None

    def commit(self, write: DeliveryWrite) -> DeliveryWrite:
        with self._ready:
            self._queue.append(write)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
                self._thread.start()
            self._ready.notify()
        write.done.wait()
        if write.error is not None:
            raise write.error
        return write

    def _run(self) -> None:
        try:
            while True:
                with self._ready:
                    if not self._queue and not self._ready.wait_for(lambda: self._queue, self._idle_seconds):
                        self._thread = None  # under the lock: a write handed over from now on starts a new thread
                        return
                self._write_next()
        except BaseException:  # stopped (not expected): no write is left waiting for this thread
            with self._ready:
                self._thread = None
                stranded, self._queue = self._queue, []
            for write in stranded:
                write.error = RuntimeError("the group commit's writer stopped")
                write.done.set()
            raise

    def _write_next(self) -> None:
        """Wait for the database's write lock, then write every delivery handed over by then.

        Taking the batch once the lock is had, not before waiting for it, lets the deliveries
        that arrive while another process writes join this batch: one commit for them all.
        """
        lock = write_lock(engine_of(self._sessions))
        try:
            lock.__enter__()
        except Exception as exc:  # never had (timed out): whoever is waiting gets the error (503)
            batch = self._take()
            for write in batch:
                write.error = exc
                write.done.set()
            return
        try:
            self._write(self._take())
        finally:
            lock.__exit__(None, None, None)

    def _take(self) -> list[DeliveryWrite]:
        with self._ready:
            batch, self._queue = self._queue[:self._max_batch], self._queue[self._max_batch:]
        return batch

    def _write(self, batch: list[DeliveryWrite]) -> None:
        try:
            commit_batch(self._sessions, batch)
        except BaseException as exc:  # not expected (errors are kept per write), but no request is left waiting
            for write in batch:
                write.error = write.error or exc
            if not isinstance(exc, Exception):
                raise
        finally:
            for write in batch:
                write.done.set()


def commit_batch(sessions: sessionmaker[Session], writes: list[DeliveryWrite]) -> None:
    """Commit ``writes`` in one transaction; if that fails, each one in a transaction of its own.

    Each write ends committed (``delivery_id``, ``build_ids``), a ``duplicate``, or with its
    ``error`` set: one bad write never fails another.
    """
    try:
        _in_one_transaction(sessions, writes)
    except Exception as exc:
        if len(writes) == 1 or database_unavailable(exc):  # no write would fare better alone
            for write in writes:
                write.error = exc
            return
        log.info("a batch of %d deliveries failed (%s); writing them one by one", len(writes), exc)
        for write in writes:
            try:
                _in_one_transaction(sessions, [write])
            except Exception as single:
                write.error = single


def _in_one_transaction(sessions: sessionmaker[Session], writes: list[DeliveryWrite]) -> None:
    """On a bare connection: no ORM session is needed to run a few prepared statements."""
    try:
        with write_transaction(sessions) as connection:
            write_deliveries(connection, writes)
    except BaseException:
        for write in writes:
            _reset_results(write)
        raise


def commit_alone(sessions: sessionmaker[Session], write: DeliveryWrite) -> DeliveryWrite:
    """Write one delivery in a transaction of its own, in the calling thread (no batching)."""
    _in_one_transaction(sessions, [write])
    return write


def _reset_results(write: DeliveryWrite) -> None:
    write.delivery_id, write.build_ids, write.duplicate = None, [], False


Committer = Callable[[DeliveryWrite], DeliveryWrite]
