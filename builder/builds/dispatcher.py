"""Webhook intake's hand-off to the broker, from a background thread of the web process.

A delivery's request thread commits its builds and answers; it does not wait for the broker.
It hands the new build ids to this process's ``Dispatcher``, which a moment later (``window``
seconds: what arrives meanwhile joins the batch) reads which of them are still queued, sends
those, and hands them to ``DispatchMarks`` to be marked. A build superseded or cancelled
before then is never sent: a burst of pushes to one branch costs one broker message, not one
per push. A send the broker refuses leaves the rest of the batch unsent; the outbox relay
sends them after its grace period, as it does for a process that died before sending
(``builder/builds/outbox.py``). At interpreter exit what is pending is sent at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from builder.builds.outbox import CHUNK, Mark, Send, dispatch
from builder.db.models import Build, BuildState
from builder.background_batch import BackgroundBatch

log = logging.getLogger(__name__)

# Built once (its values bound per call): which of these builds are still waiting to be sent.
_STILL_QUEUED = select(Build.id).where(Build.id.in_(bindparam("ids", expanding=True)),
                                       Build.state == BuildState.QUEUED.value, Build.dispatched_at.is_(None))


class Dispatcher(BackgroundBatch[list[int]]):
    """Sends the builds handed to ``add`` from one thread, in batches, skipping those no longer queued."""

    thread_name = "dispatcher"

    def __init__(self, sessions: sessionmaker[Session], send: Send, mark: Mark, window: float = 0.05) -> None:
        self._sessions = sessions
        self._send = send
        self._mark = mark
        super().__init__(window)

    def _empty(self) -> list[int]:
        return []

    def add(self, build_ids: Iterable[int]) -> None:
        with self._lock:
            self._pending.extend(build_ids)
            self._ensure_thread()

    def flush(self) -> bool:
        """Send what was handed over so far (those still queued). Always True: what the broker
        refused is not kept here but left to the relay, which owns retrying."""
        batch = list(dict.fromkeys(self._take()))
        if not batch:
            return True
        try:
            queued = self._still_queued(batch)
        except Exception as exc:  # the database is unavailable: send them all (a copy is harmless)
            log.warning("could not read the state of %d build(s) before sending them: %s", len(batch), exc)
            queued = set(batch)
        dispatch(self._sessions, self._send, [b for b in batch if b in queued], mark=self._mark)
        return True

    def _still_queued(self, build_ids: list[int]) -> set[int]:
        found: set[int] = set()
        with self._sessions() as session:
            for start in range(0, len(build_ids), CHUNK):
                found.update(session.scalars(_STILL_QUEUED, {"ids": build_ids[start:start + CHUNK]}))
        return found
