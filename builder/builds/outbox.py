"""The hand-off of queued builds to the broker, reliable across broker outages.

A build row is the outbox message: it is committed in state ``queued`` with
``dispatched_at`` unset, sent to the broker after the commit, then marked.
If the broker is down the row stays unmarked and ``relay_pending`` sends it
later. A build sent twice is harmless: a worker claims it atomically and a
second claim finds nothing to do.

Marking is one write transaction for all the builds sent together
(``mark_dispatched``). The webhook path sends from a background thread
(``builder/builds/dispatcher.py``) and defers the marks too: ``DispatchMarks``
writes the marks of every build its process sent in the last fraction of a
second in one transaction from a background thread, so a delivery costs one
write transaction, not two. A mark that is never written (the process died
first) only means the relay sends that build once more after the grace period.

A build that was sent but never claimed is sent again after ``redispatch_after`` (a lost
message), unless the broker is known to have lost everything it held (it restarted without
persistence; ``workers/broker_watch.py`` notices): then ``forget_dispatches`` unmarks every
queued build at once and the relay's same pass sends them again.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Callable, Iterable

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from builder.db.engine import write_transaction
from builder.builds.fair_share import RELEASED, admissible
from builder.background_batch import BackgroundBatch
from builder.db.models import Build, BuildState, Deployment, utcnow

log = logging.getLogger(__name__)

Send = Callable[[int], None]
Mark = Callable[[list[int]], None]
CHUNK = 500  # ids per statement: well under every database's bound-parameter limit


def dispatch(
    sessions: sessionmaker[Session],
    send: Send,
    build_ids: Iterable[int],
    on_queued: Callable[[int, str], None] | None = None,
    mark: Mark | None = None,
) -> list[int]:
    """Send each build to the broker; return the ids that could not be sent yet.

    After the broker's first refusal the rest are not tried (each try would wait for the broker
    again): they stay in the outbox with it, for the relay. The builds sent are marked dispatched
    together, in one transaction, or handed to ``mark`` (e.g. ``DispatchMarks.add``) to be marked later.
    """
    pending: list[int] = []
    sent: list[int] = []
    for build_id in build_ids:
        if on_queued:
            on_queued(build_id, "queued")
        if not pending:
            try:
                send(build_id)
            except Exception as exc:  # the broker is down: the relay will retry
                log.warning("build %s, and any after it, stay in the outbox: %s", build_id, exc)
            else:
                sent.append(build_id)
                continue
        pending.append(build_id)
    if sent:
        if mark is not None:
            mark(sent)
        else:
            mark_dispatched(sessions, sent)
    return pending


def mark_dispatched(sessions: sessionmaker[Session], build_ids: Iterable[int],
                    when: datetime | None = None) -> None:
    """Record that these builds were handed to the broker (one transaction); those a worker already
    handed back (``RELEASED``: the message came and went before this mark) stay so, for the relay."""
    ids = sorted(set(build_ids))
    with write_transaction(sessions) as connection:
        for start in range(0, len(ids), CHUNK):
            connection.execute(update(Build).where(Build.id.in_(ids[start:start + CHUNK]),
                                                   or_(Build.dispatched_at.is_(None), Build.dispatched_at > RELEASED))
                               .values(dispatched_at=when or utcnow()))


class DispatchMarks(BackgroundBatch[dict[int, datetime]]):
    """Writes ``dispatched_at`` for sent builds in batches, from a background thread.

    ``add`` only records the ids (and when they were sent); a thread of this process
    wakes every ``interval`` seconds while there is something to write and marks
    everything collected in one transaction, then exits when idle. If the database
    refuses, the ids are kept and tried again with backoff (up to ``max_pending``;
    beyond that the oldest are dropped: the relay re-sends them, harmlessly).
    At interpreter exit what is left is written once more.

    Each mark is at most ``interval`` seconds late in normal operation, far inside the
    relay's grace period, so the relay does not send these builds a second time.
    """

    thread_name = "dispatch-marks"

    def __init__(self, sessions: sessionmaker[Session], interval: float = 0.2, max_pending: int = 50_000) -> None:
        self._sessions = sessions
        self._max_pending = max_pending
        super().__init__(interval)

    def _empty(self) -> dict[int, datetime]:
        return {}

    def add(self, build_ids: Iterable[int]) -> None:
        now = utcnow()
        with self._lock:
            for build_id in build_ids:
                self._pending.setdefault(build_id, now)
            self._ensure_thread()

    def flush(self) -> bool:
        """Write the marks collected so far; False if the database refused (they are kept)."""
        batch = self._take()
        if not batch:
            return True
        try:
            # the earliest send time for all: the relay's re-send clock never starts late
            mark_dispatched(self._sessions, batch, min(batch.values()))
        except Exception as exc:
            log.warning("could not mark %d build(s) dispatched yet: %s", len(batch), exc)
            with self._lock:
                merged = {**batch, **self._pending}
                if len(merged) > self._max_pending:
                    merged = dict(sorted(merged.items(), key=lambda item: item[1])[-self._max_pending:])
                self._pending = merged
                self._ensure_thread()  # the writer may have found nothing and ended meanwhile
            return False
        return True


# A build (or deployment) that was sent but not claimed is sent again after ``redispatch_after``
# seconds, then after ever longer waits: each wait is as long as the row has existed by then (so
# it doubles), up to ``REDISPATCH_MAX_SECONDS``. Its message may have been lost (a broker restarted
# without persistence), or it may only be waiting behind a long backlog: a copy is harmless (the
# worker's claim is atomic) but a copy every ten minutes of a long backlog would grow the backlog.
REDISPATCH_MAX_SECONDS = 6 * 3600


def next_dispatch_mark(now: datetime, created_at: datetime, redispatch_after_seconds: int,
                       redispatch_max_seconds: int = REDISPATCH_MAX_SECONDS) -> datetime:
    """The ``dispatched_at`` to record for a row the relay sends again now.

    The relay sends a row again once ``dispatched_at`` is ``redispatch_after_seconds`` old, so
    a mark ahead of ``now`` delays that: the next copy goes out ``max(redispatch_after, age)``
    (at most ``redispatch_max_seconds``) from now, where age is the time since the row was
    created. A row's first send is always marked ``now``.
    """
    age = (now - created_at).total_seconds()
    wait = min(max(redispatch_after_seconds, age), max(redispatch_max_seconds, redispatch_after_seconds))
    return now + timedelta(seconds=wait - redispatch_after_seconds)


_MARK_ONE = update(Build).where(Build.id == bindparam("m_id")).values(dispatched_at=bindparam("m_when"))


def relay_pending(
    sessions: sessionmaker[Session],
    send: Send,
    grace_seconds: int,
    redispatch_after_seconds: int = 600,
    redispatch_max_seconds: int = REDISPATCH_MAX_SECONDS,
    now: datetime | None = None,
) -> int:
    """Send queued builds that were never sent (or whose message may be lost).

    A build never sent (``dispatched_at`` unset) or handed back by a worker (``RELEASED``) is sent on
    every pass until the broker takes it. One sent but still queued ``redispatch_after_seconds`` later is sent again, and then
    at growing intervals (``next_dispatch_mark``), so a long broker backlog is not flooded with copies.
    """
    now = now or utcnow()
    with sessions() as session:
        due = {
            build_id: (created_at, dispatched_at)
            for build_id, created_at, dispatched_at in session.execute(
                select(Build.id, Build.created_at, Build.dispatched_at)
                .where(
                    Build.state == BuildState.QUEUED.value,
                    Build.created_at < now - timedelta(seconds=grace_seconds),
                    admissible(),  # a build its trigger's max_concurrent holds back waits unsent
                    or_(
                        Build.dispatched_at.is_(None),
                        Build.dispatched_at < now - timedelta(seconds=redispatch_after_seconds),
                    ),
                )
                .order_by(Build.id)
                .limit(500)
            )
        }

    def mark(sent: list[int]) -> None:
        marks = [{"m_id": build_id,
                  "m_when": now if due[build_id][1] is None or due[build_id][1] <= RELEASED else
                  next_dispatch_mark(now, due[build_id][0], redispatch_after_seconds, redispatch_max_seconds)}
                 for build_id in sent]
        with sessions() as session:
            session.connection().execute(_MARK_ONE, marks)
            session.commit()

    failed = dispatch(sessions, send, list(due), mark=mark)
    return len(due) - len(failed)


def undispatched_deployments(sessions: sessionmaker[Session], grace_seconds: int,
                             redispatch_after_seconds: int = 600,
                             redispatch_max_seconds: int = REDISPATCH_MAX_SECONDS) -> list[int]:
    """Pending deployments to hand to the broker (again); marks them dispatched.

    Like builds: never sent, marked now; sent before, marked ahead so copies come at growing intervals.
    """
    now = utcnow()
    with sessions() as session:
        rows = list(session.execute(
            select(Deployment.id, Deployment.created_at, Deployment.dispatched_at).where(
                Deployment.state == "pending",
                Deployment.created_at < now - timedelta(seconds=grace_seconds),
                or_(Deployment.dispatched_at.is_(None),
                    Deployment.dispatched_at < now - timedelta(seconds=redispatch_after_seconds)))
            .order_by(Deployment.id).limit(200)))
        if rows:
            session.connection().execute(_MARK_DEPLOYMENT, [
                {"m_id": row_id, "m_when": now if dispatched_at is None else
                 next_dispatch_mark(now, created_at, redispatch_after_seconds, redispatch_max_seconds)}
                for row_id, created_at, dispatched_at in rows])
            session.commit()
    return [row_id for row_id, _created, _dispatched in rows]


_MARK_DEPLOYMENT = (update(Deployment).where(Deployment.id == bindparam("m_id"))
                    .values(dispatched_at=bindparam("m_when")))


def forget_dispatches(sessions: sessionmaker[Session]) -> tuple[int, int]:
    """The broker lost what it was handed (it restarted without persistence): every queued build and
    pending deployment counts as never sent, so the relay's next ``relay_pending`` /
    ``undispatched_deployments`` send them at once instead of ``redispatch_after`` seconds later.
    A copy of one the broker still had is harmless: the claim is atomic. Returns (builds, deployments)."""
    with write_transaction(sessions) as connection:
        builds = connection.execute(update(Build).where(Build.state == BuildState.QUEUED.value,
                                                        Build.dispatched_at.is_not(None)).values(dispatched_at=None))
        deployments = connection.execute(update(Deployment).where(Deployment.state == "pending",
                                                                  Deployment.dispatched_at.is_not(None))
                                         .values(dispatched_at=None))
    return builds.rowcount, deployments.rowcount
