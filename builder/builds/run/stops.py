"""What stops a running build, and the claim that fences an attempt's writes.

Shared by the build's watcher (``builder.builds.run.log.CancelCheck``), the pipeline and the
reaper; no database access here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from builder.errors import BuildhookError
from builder.db.models import Build, BuildState

RUNNING = (BuildState.CLONING.value, BuildState.BUILDING.value, BuildState.PUSHING.value)


@dataclass(frozen=True)
class Fence:
    """The claim an attempt holds: its writes apply only while the row is still that attempt."""

    build_id: int
    worker: str
    attempt: int

    def where(self) -> tuple[object, ...]:
        return (Build.id == self.build_id, Build.worker == self.worker, Build.attempts == self.attempt,
                Build.state.in_(RUNNING))


class BuildCancelled(BuildhookError):
    """The build was stopped while it ran: cancelled, timed out, over its log limit, or taken away.

    ``CancelCheck.stop`` tells which; only a cancel ends the build ``cancelled``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StopKind(enum.Enum):
    CANCELLED = "cancelled"  # someone asked: the build ends cancelled
    TIMED_OUT = "timed_out"  # the build timeout: failed, never retried
    LOG_LIMIT = "log_limit"  # the log size limit: failed, never retried
    LOST = "lost"  # the build is no longer this worker's (reaped): leave its row alone


@dataclass(frozen=True)
class Stop:
    kind: StopKind
    message: str


@dataclass(frozen=True)
class Heartbeat:
    """This worker's name ("host:pid"), the attempt it runs, and how often to say it is alive.

    After a stop the heartbeat goes on for at most ``grace`` seconds (default: ``4 * every``,
    the TTL) while the step winds down; a step that does not end by then (an engine that
    went silent) is left to the reaper, whose fenced UPDATE is safe against this worker.
    """

    worker: str
    attempt: int
    every: float
    grace: float | None = None

    @property
    def wind_down(self) -> float:
        return self.grace if self.grace is not None else 4 * self.every


@dataclass(frozen=True)
class Timeout:
    """The build's time limit, counted from ``started`` (``time.monotonic()`` at the claim)."""

    seconds: int
    source: str  # "trigger" or "BUILDHOOK_BUILD_TIMEOUT"
    started: float

    @property
    def message(self) -> str:
        return f"timed out after {self.seconds} s (limit from {self.source})"
