"""Reap running builds whose worker stopped responding: no build stays running forever.

A worker records itself in ``builds.worker`` ("host:pid") when it claims a build and
refreshes ``builds.heartbeat_at`` every ``heartbeat_ttl / 4`` seconds while it runs it
(``builder.builds.run.log.CancelCheck``). A build in ``cloning``/``building``/``pushing``
whose heartbeat (or, without one, its start) is older than ``heartbeat_ttl`` lost its
worker: killed, its machine gone, or stuck.

For each such build, one conditional UPDATE (still running, same attempt, same worker,
still stale) either puts it back to ``queued`` with ``dispatched_at`` unset, so the
outbox relay sends it again, or, after ``pipeline.MAX_ATTEMPTS`` attempts, fails it
(a build someone asked to cancel ends ``cancelled``).
The same transaction appends a line to the build's log saying so. Two reapers never
both act on a build: the second UPDATE matches nothing. A worker that was only stalled
finds its heartbeat refused and stops without touching the row (the pipeline's writes
are fenced on worker and attempt).

Then what the dead attempt left is removed, best effort: the engine's step containers
it reported ("---> Running in <id>" in its log) and, on the same host, its work
directory (``build-<id>-<attempt>-<hex>``). :func:`sweep_work_dirs` also removes, on
every pass, directories in this host's work directory that no running attempt owns
(e.g. of a build reaped by a worker on another host).

Clocks: heartbeats carry the worker's clock and the reaper compares with its own, so
the workers' clocks must agree to well within the TTL (NTP).
"""

from __future__ import annotations

import logging
import shutil
import socket
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

import docker
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from builder.builds.run.processes import work_dir_attempt
from builder.builds.run.stops import RUNNING
from builder.builds.image.classic import connect
from builder.db.models import Build, BuildLogLine, BuildState, utcnow
from builder.builds.run.pipeline import MAX_ATTEMPTS, StateListener, no_listener
from builder.settings import Settings
from builder.builds.run.step_containers import attempt_containers, remove_containers

log = logging.getLogger(__name__)

REQUEUED = "requeued"
FAILED = "failed"
CANCELLED = "cancelled"  # a cancel had been asked for: it ends cancelled rather than retried


@dataclass(frozen=True)
class Reaped:
    build_id: int
    worker: str | None
    attempt: int
    outcome: str  # REQUEUED, FAILED or CANCELLED
    silent_seconds: int
    error: str | None = None
    containers_removed: tuple[str, ...] = ()
    work_dirs_removed: tuple[str, ...] = ()


def reap(
    sessions: sessionmaker[Session],
    settings: Settings,
    on_state: StateListener = no_listener,
    engine: Callable[[str | None], docker.DockerClient] = connect,
    now: datetime | None = None,
    sweep: bool = True,
) -> list[Reaped]:
    """One reaper pass: requeue or fail every stale running build, clean up after each.

    A stale build whose cancel had been asked for ends ``cancelled`` instead. ``on_state``
    hears "failed" or "cancelled" for each build ended here (commit statuses, subscriptions).
    With ``sweep``, orphaned work directories of this host are removed too.
    """
    ttl = settings.heartbeat_ttl
    now = now or utcnow()
    cutoff = now - timedelta(seconds=ttl)
    reaped: list[Reaped] = []
    for row in stale_builds(sessions, cutoff):
        taken = _take(sessions, row, cutoff, now)
        if taken is None:
            continue  # it beat, finished, or another reaper took it first
        taken = _clean_up(sessions, settings, engine, taken)
        log.warning("reaped build %s (attempt %s) of worker %s: %s", taken.build_id, taken.attempt,
                    taken.worker, taken.error or "requeued")
        if taken.outcome in (FAILED, CANCELLED):
            on_state(taken.build_id, taken.outcome)
        reaped.append(taken)
    if sweep:
        sweep_work_dirs(sessions, settings.effective_work_dir)
    return reaped


def stale_builds(sessions: sessionmaker[Session], cutoff: datetime) -> list:  # type: ignore[type-arg]
    """Running builds not heard from since ``cutoff`` (id, worker, attempts, heartbeat_at, started_at,
    cancel_requested_at, reason)."""
    with sessions() as session:
        return list(session.execute(
            select(Build.id, Build.worker, Build.attempts, Build.heartbeat_at, Build.started_at,
                   Build.cancel_requested_at, Build.reason)
            .where(Build.state.in_(RUNNING), _stale(cutoff))
            .order_by(Build.id)
            .limit(200)
        ))


def _stale(cutoff: datetime):  # type: ignore[no-untyped-def]
    return or_(Build.heartbeat_at < cutoff,
               and_(Build.heartbeat_at.is_(None), or_(Build.started_at.is_(None), Build.started_at < cutoff)))


def _take(sessions: sessionmaker[Session], row, cutoff: datetime, now: datetime) -> Reaped | None:  # type: ignore[no-untyped-def]
    """The conditional UPDATE and its log line, in one transaction; None if the build was not ours to reap."""
    last_seen = row.heartbeat_at or row.started_at
    silent = int((now - last_seen).total_seconds()) if last_seen else 0
    worker = row.worker or "an unknown worker"
    same_worker = Build.worker.is_(None) if row.worker is None else Build.worker == row.worker
    if row.cancel_requested_at is not None:  # someone asked to cancel it: no retry
        outcome, error = CANCELLED, None
        reason = row.reason or "cancelled"
        values: dict[str, object] = {"state": BuildState.CANCELLED.value, "reason": reason, "finished_at": now}
        line = f"Worker {worker} stopped responding (no heartbeat for {silent} s): {reason}"
    elif row.attempts < MAX_ATTEMPTS:
        outcome, error = REQUEUED, None
        values = {"state": BuildState.QUEUED.value, "dispatched_at": None, "heartbeat_at": None}
        line = (f"Worker {worker} stopped responding (no heartbeat for {silent} s): attempt {row.attempts} "
                f"is abandoned and the build is retried")
    else:
        outcome = FAILED
        error = (f"worker {worker} stopped responding (no heartbeat for {silent} s); "
                 f"gave up after {row.attempts} attempts")
        values = {"state": BuildState.FAILED.value, "error": error, "reason": None, "finished_at": now}
        line = f"FAILED: {error}"
    with sessions() as session:
        result = session.execute(
            update(Build)
            .where(Build.id == row.id, Build.state.in_(RUNNING), Build.attempts == row.attempts, same_worker,
                   _stale(cutoff),
                   # a cancel asked for since the SELECT: the next pass ends it cancelled instead
                   *(() if outcome == CANCELLED else (Build.cancel_requested_at.is_(None),)))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            session.rollback()
            return None
        seq = session.scalar(select(func.max(BuildLogLine.seq)).where(BuildLogLine.build_id == row.id)) or 0
        session.add(BuildLogLine(build_id=row.id, seq=seq + 1, text=line))
        session.commit()
    return Reaped(row.id, row.worker, row.attempts, outcome, silent, error)


def _clean_up(sessions: sessionmaker[Session], settings: Settings,
              engine: Callable[[str | None], docker.DockerClient], taken: Reaped) -> Reaped:
    containers = attempt_containers(sessions, taken.build_id, taken.attempt)
    removed = remove_containers(engine, settings.docker_host, containers) if containers else []
    dirs: list[str] = []
    if taken.worker and same_host(taken.worker):
        dirs = remove_work_dirs(settings.effective_work_dir, taken.build_id, taken.attempt)
    return replace(taken, containers_removed=tuple(removed), work_dirs_removed=tuple(dirs))


def same_host(worker: str) -> bool:
    return worker.rpartition(":")[0] == socket.gethostname()


def remove_work_dirs(work_dir: Path, build_id: int, attempt: int) -> list[str]:
    """Remove attempt ``attempt``'s work directories of build ``build_id`` (``build-<id>-<attempt>-*``)."""
    removed = []
    for path in work_dir.glob(f"build-{build_id}-{attempt}-*"):
        if work_dir_attempt(path.name) == (build_id, attempt) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


def sweep_work_dirs(sessions: sessionmaker[Session], work_dir: Path) -> list[str]:
    """Remove work directories no running attempt owns: of finished, queued or deleted builds, or of an
    attempt that is not the build's current one.

    The directories are listed before the rows are read: a directory an attempt creates after its
    claim is either not listed, or listed while its row already says it runs.
    """
    try:
        found = [(path, *owner) for path in work_dir.iterdir()
                 if (owner := work_dir_attempt(path.name)) and path.is_dir()]
    except OSError:
        return []
    if not found:
        return []
    with sessions() as session:
        rows = {row.id: (row.state, row.attempts) for row in session.execute(
            select(Build.id, Build.state, Build.attempts).where(Build.id.in_({build for _, build, _ in found})))}
    removed = []
    for path, build_id, attempt in found:
        state, attempts = rows.get(build_id, (None, None))
        if state in RUNNING and attempts == attempt:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path))
        log.info("removed the orphaned work directory %s", path)
    return removed
