"""Webhook intake's hand-off to the broker, from a background thread of the web process.

A delivery's request thread commits its builds and answers; it does not wait for the broker.
It hands the new build ids to this process's ``Dispatcher``, which a moment later (``window``
seconds: what arrives meanwhile joins the batch) reads which of them are still queued, sends
those, and hands them to ``DispatchMarks`` to be marked. A build superseded or cancelled
before then is never sent: a burst of pushes to one branch costs one broker message, not one
per push. A send the broker refuses leaves the rest of the batch unsent; the outbox relay
sends them after its grace period, as it does for a process that died before sending
(``builder/builds/outbox.py``). At interpreter exit what is pending is sent at once.

The window is 0.2 s. In a burst of pushes to one branch, the later deliveries' intake supersedes
the builds it finds on their chain; what it could not (planned before those were committed), this
thread weighs one by one with a few reads each. The longer the window, the more of a batch intake
has settled already: 0.2 s took 4 % less CPU per delivery than 0.05 s in ``bench/intake_floor.py``'s
burst (0.5 s, another 1.5 %), and a build starts 0.15 s later, beside a clone and a build.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from builder.builds.commit_order import (ACTIVE, LinkAnswers, Order, Sibling, chain_links, chain_order, chain_siblings,
                                         pushed_on_top)
from builder.builds.outbox import CHUNK, Mark, Send, dispatch
from builder.db.engine import engine_of, write_transaction
from builder.db.models import Build, BuildState, Trigger, utcnow
from builder.background_batch import BackgroundBatch
from builder.intake.planning import Plan, supersede
from builder.metrics import count_build_end

log = logging.getLogger(__name__)

# The builds of the same rule and ref pushed on top of a commit (their ``before``): then that commit's
# build may be older; ``chain_order`` decides, as intake would have (``ix_builds_rule_ref_before``). One
# superseded itself counts: something newer still replaced it.
_ON_TOP_OF = pushed_on_top((*ACTIVE, BuildState.SUCCEEDED.value, BuildState.SUPERSEDED.value))
# Built once (its values bound per call): which of these builds are still waiting to be sent.
_STILL_QUEUED = (
    select(Build.id, Build.trigger_id, Build.rule_id, Build.ref, Build.commit, Build.before, Trigger.supersede)
    .outerjoin(Trigger, Trigger.id == Build.trigger_id)
    .where(Build.id.in_(bindparam("ids", expanding=True)), Build.state == BuildState.QUEUED.value,
           Build.dispatched_at.is_(None))
)


@dataclass(frozen=True)
class Waiting:
    """A build still waiting to be sent; ``newer``: the build of a newer commit that replaced it, if any."""

    id: int
    trigger_id: int | None
    newer: Sibling | None


def _newer_sibling(connection: Connection, build_id: int, rule_id: int, ref: str, commit: str,
                   before: str | None, answers: LinkAnswers) -> Sibling | None:
    """A build of the rule and ref whose commit is newer than this one's by the payloads' chain: among
    what intake would have weighed, had it planned this build later (the queued, running and last
    succeeded ones), and the builds pushed on top of this one, whatever became of them since.
    ``answers``: the chain's links asked for by the batch's other builds (their walks overlap)."""
    on_top = [Sibling(*row) for row in _ON_TOP_OF.rows(connection, {"rule_id": rule_id, "ref": ref, "link": commit})]
    if not on_top:  # the newest of its chain: nothing replaced it
        return None
    found = chain_siblings(connection, rule_id, ref, commit, before, answers) + on_top
    links = chain_links(found)
    return next((other for other in found
                 if other.id != build_id and chain_order(commit, before, other, links) is Order.OLDER), None)


class Dispatcher(BackgroundBatch[list[int]]):
    """Sends the builds handed to ``add`` from one thread, in batches, skipping those no longer queued."""

    thread_name = "dispatcher"

    def __init__(self, sessions: sessionmaker[Session], send: Send, mark: Mark, window: float = 0.2) -> None:
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
            waiting = self._still_queued(batch)
            queued = {build.id for build in waiting if build.newer is None}
            queued |= self._supersede([build for build in waiting if build.newer is not None])
        except Exception as exc:  # the database is unavailable: send them all (a copy is harmless)
            log.warning("could not read the state of %d build(s) before sending them: %s", len(batch), exc)
            queued = set(batch)
        dispatch(self._sessions, self._send, [b for b in batch if b in queued], mark=self._mark)
        return True

    def _still_queued(self, build_ids: list[int]) -> list[Waiting]:
        found: list[Waiting] = []
        answers: LinkAnswers = {}
        with engine_of(self._sessions).connect() as connection:  # one connection for the batch
            for start in range(0, len(build_ids), CHUNK):
                rows = list(connection.execute(_STILL_QUEUED, {"ids": build_ids[start:start + CHUNK]}))
                for build_id, trigger_id, rule_id, ref, commit, before, supersedes in rows:
                    newer = _newer_sibling(connection, build_id, rule_id, ref, commit, before, answers) \
                        if supersedes else None
                    found.append(Waiting(build_id, trigger_id, newer))
        return found

    def _supersede(self, replaced: list[Waiting]) -> set[int]:
        """Supersede the builds a push on top of them replaced; return those to send after all (none,
        unless the database refused: then the worker settles their order when it claims them)."""
        if not replaced:
            return set()
        plans: dict[int | None, Plan] = {}
        for build in replaced:
            plans.setdefault(build.trigger_id, Plan()).supersedes.append(
                (build.id, f"superseded by a newer push of {build.newer.short}"))  # type: ignore[union-attr]
        try:
            with write_transaction(self._sessions) as connection:
                now = utcnow()
                for plan in plans.values():
                    supersede(connection, plan, now)
        except Exception as exc:
            log.warning("could not supersede %d replaced build(s); sending them: %s", len(replaced), exc)
            return {build.id for build in replaced}
        for trigger_id, plan in plans.items():
            count_build_end(BuildState.SUPERSEDED.value, trigger_id, plan.superseded)
        return set()
