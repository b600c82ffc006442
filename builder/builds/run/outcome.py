"""How a build attempt ends: the decision (``decide``) and its fenced final write (``record``).

``decide`` maps what the attempt left (the error it raised, why it was stopped, a path-filter skip,
a newer commit that supersedes it) to an ``Ending``; ``record`` writes that ending. Every write that
ends an attempt is fenced on the claim (``worker`` and ``attempts``) and writes the attempt's last
log lines in the same transaction: a worker whose build was reaped and handed to another worker
changes nothing, not even the log. When the database is briefly unavailable, those final writes
are tried again for ``FINAL_WRITE_PATIENCE`` seconds.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from builder.builds.run.log import BuildLog, CancelCheck
from builder.builds.run.stops import BuildCancelled, Fence, Stop, StopKind
from builder.db.engine import database_unavailable
from builder.errors import PermanentError, TransientError
from builder.db.models import Build, BuildState, utcnow

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
FINAL_WRITE_PATIENCE = 30.0  # seconds a final write is tried again while the database is unavailable

StateListener = Callable[[int, str], None]
T = TypeVar("T")


def no_listener(_build_id: int, _state: str) -> None:
    return None


class Outcome(enum.Enum):
    NOT_CLAIMED = "not_claimed"  # gone, already running or finished
    SKIPPED = "skipped"  # a path filter found nothing to build
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # someone cancelled it while it ran
    RETRY = "retry"  # a transient failure; the build is queued again
    LOST = "lost"  # the build was reaped while this worker ran it (it had missed its heartbeats)


class Ending(enum.Enum):
    """The final state an attempt's result maps to (``decide``)."""

    CANCELLED = "cancelled"
    LOST = "lost"  # reaped: nothing is written
    FAILED = "failed"
    CRASHED = "crashed"  # a bug or an unforeseen failure: failed, and logged with its traceback
    RETRY = "retry"  # queued again
    SUPERSEDED = "superseded"
    SKIPPED = "skipped"
    SUCCEEDED = "succeeded"


@dataclass(frozen=True)
class Decision:
    ending: Ending
    text: str = ""  # the error, the reason, or the stop's message
    cause: BaseException | None = None  # a crash's exception, logged with its traceback


def decide(error: Exception | None, stopped: bool, stop: Stop | None, skip: str | None, superseded: str | None,
           attempts: int) -> Decision:
    """The ending of an attempt that raised ``error`` (None: it ran through), was ``stopped`` (for
    ``stop``), or was skipped or superseded. Whatever broke once the build was stopped (a stopped
    stream, a killed git), the stop decides."""
    if error is not None and stopped:
        if stop is None or stop.kind is StopKind.CANCELLED:
            return Decision(Ending.CANCELLED, stop.message if stop else "cancelled")
        if stop.kind is StopKind.LOST:
            return Decision(Ending.LOST, stop.message)
        return Decision(Ending.FAILED, stop.message)  # timed out, log limit: no retry
    if isinstance(error, PermanentError):
        return Decision(Ending.FAILED, str(error))
    if isinstance(error, TransientError):
        if attempts >= MAX_ATTEMPTS:
            return Decision(Ending.FAILED, f"{error} (gave up after {attempts} attempts)")
        return Decision(Ending.RETRY, f"Transient failure, will retry: {error}")
    if error is not None:
        return Decision(Ending.CRASHED, f"internal error: {type(error).__name__}: {error}", error)
    if superseded:
        return Decision(Ending.SUPERSEDED, superseded)
    if skip:
        return Decision(Ending.SKIPPED, skip)
    return Decision(Ending.SUCCEEDED)


def record(decision: Decision, build_log: BuildLog, fence: Fence, cancel: CancelCheck, on_state: StateListener,
           succeed: Callable[[], bool]) -> Outcome:
    """Write ``decision`` (fenced); ``succeed`` writes a success (False when the build is not ours)."""
    ending, text = decision.ending, decision.text
    if ending is Ending.CANCELLED:
        return cancelled(build_log, fence, text, on_state)
    if ending is Ending.LOST:
        log.warning("build %s: %s", fence.build_id, text)
        return Outcome.LOST
    if ending is Ending.CRASHED:  # never leave the build running
        log.error("build %s crashed", fence.build_id, exc_info=decision.cause)
    if ending in (Ending.FAILED, Ending.CRASHED):
        return fail(build_log, fence, text, on_state)
    if ending is Ending.RETRY:
        if requeue(build_log, fence, text):
            return Outcome.RETRY
        # Refused: a cancel request came in the meantime, or the build was reaped.
        cancel.check()
        return Outcome.LOST if cancel.lost else cancelled(build_log, fence, cancel.reason, on_state)
    if ending in (Ending.SUPERSEDED, Ending.SKIPPED):
        state = BuildState.SUPERSEDED if ending is Ending.SUPERSEDED else BuildState.SKIPPED
        line = text[:1].upper() + text[1:] if ending is Ending.SUPERSEDED else f"Skipped: {text}"
        if not final_write(build_log, fence, line, dict(state=state.value, reason=text, finished_at=utcnow())):
            return Outcome.LOST
        on_state(fence.build_id, state.value)
        return Outcome.SKIPPED
    if cancel.check():  # too late to stop anything: every tag is in the registry
        build_log("A stop request came after the last tag was pushed: the build counts as succeeded")
    if not succeed():
        log.warning("build %s was reaped while it ran here; its result is not recorded", fence.build_id)
        return Outcome.LOST
    on_state(fence.build_id, BuildState.SUCCEEDED.value)
    return Outcome.SUCCEEDED


def set_state(sessions: sessionmaker[Session], fence: Fence, **values: object) -> bool:
    """Update the build while it is still this attempt's; False if not."""
    with sessions() as session:
        result = session.execute(update(Build).where(*fence.where()).values(**values))
        session.commit()
        return result.rowcount == 1


def lost(cancel: CancelCheck, fence: Fence) -> BuildCancelled:
    """The row is no longer this attempt's (a reaper took it): stop, write nothing more."""
    cancel.stop(StopKind.LOST, f"build {fence.build_id} is no longer run by {fence.worker} (it was reaped)")
    return BuildCancelled(cancel.reason)


def final_write(build_log: BuildLog, fence: Fence, line: str, values: dict[str, object],
                where: tuple[object, ...] = (), then: Callable[[Session], None] | None = None,
                lost_if_refused: bool = True) -> bool:
    """The attempt's final state, with ``line`` (its last log line) and any lines still buffered, in
    one transaction, only while the row is still this attempt's (and matches ``where``); False if not,
    and nothing is written (``lost_if_refused``: the log is closed, the build is another's now).
    While the database is unavailable it is tried again, for ``FINAL_WRITE_PATIENCE`` seconds."""
    build_log.append(line)

    def fenced(session: Session) -> bool:
        result = session.execute(update(Build).where(*fence.where(), *where).values(**values)
                                 .execution_options(synchronize_session=False))
        if result.rowcount != 1:
            return False
        if then is not None:
            then(session)
        return True

    if patiently(fence.build_id, lambda: build_log.flush(fenced)):
        return True
    if lost_if_refused:
        build_log.close()
    return False


def patiently(build_id: int, write: Callable[[], T]) -> T:
    """``write()``, again with backoff while the database is unavailable (locked, restarting), for
    ``FINAL_WRITE_PATIENCE`` seconds: a hiccup must not leave the build running until it is reaped."""
    deadline = time.monotonic() + FINAL_WRITE_PATIENCE
    pause = 0.2
    while True:
        try:
            return write()
        except Exception as exc:
            if not database_unavailable(exc) or time.monotonic() + pause > deadline:
                raise
            log.warning("build %s: the database is unavailable (%s); its final state is written again in "
                        "%.1f s", build_id, exc, pause)
        time.sleep(pause)
        pause = min(pause * 2, 5.0)


def fail(build_log: BuildLog, fence: Fence, error: str, on_state: StateListener) -> Outcome:
    if not final_write(build_log, fence, f"FAILED: {error}",
                       dict(state=BuildState.FAILED.value, error=error, reason=None, finished_at=utcnow())):
        return Outcome.LOST
    on_state(fence.build_id, BuildState.FAILED.value)
    return Outcome.FAILED


def requeue(build_log: BuildLog, fence: Fence, line: str) -> bool:
    """Put the build back to queued for a retry, with ``line``, unless a cancel was requested (or it is
    not ours): then nothing is written and the lines stay buffered."""
    return final_write(build_log, fence, line,
                       dict(state=BuildState.QUEUED.value, dispatched_at=utcnow(), heartbeat_at=None),
                       where=(Build.cancel_requested_at.is_(None),), lost_if_refused=False)


def cancelled(build_log: BuildLog, fence: Fence, reason: str, on_state: StateListener) -> Outcome:
    # "Cancelled by <who>": the log's last line
    if not final_write(build_log, fence, reason[:1].upper() + reason[1:],
                       dict(state=BuildState.CANCELLED.value, reason=reason, finished_at=utcnow())):
        return Outcome.LOST
    on_state(fence.build_id, BuildState.CANCELLED.value)
    return Outcome.CANCELLED
