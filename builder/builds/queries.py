"""Reading builds and their logs, and the JSON shape the API and CLI show."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from builder.errors import NotFound
from builder.builds.fair_share import queue_position
from builder.db.models import Build, BuildLogLine


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def build_to_dict(build: Build) -> dict[str, Any]:
    return {
        "id": build.id,
        "trigger": build.trigger_id,
        "rule": build.rule_id,
        "provider": build.provider,
        "repository": build.repository,
        "state": build.state,
        "commit": build.commit,
        "short_sha": build.commit[:7],
        "commit_message": build.commit_message,
        "author": build.author,
        "ref": build.ref,
        "ref_type": build.ref_type,
        "ref_name": build.ref_name,
        "image": build.image,
        "tags": list(build.tags),
        "digest": build.digest,
        "pull": f"{build.image}@{build.digest}" if build.digest else None,
        "error": build.error,
        "reason": build.reason,
        "target": build.target,
        "platforms": build.platforms or [],
        "attempts": build.attempts,
        "created_at": _iso(build.created_at),
        "started_at": _iso(build.started_at),
        "cloning_at": _iso(build.cloning_at),
        "building_at": _iso(build.building_at),
        "pushing_at": _iso(build.pushing_at),
        "finished_at": _iso(build.finished_at),
        "cancel_requested": build.cancel_requested_at is not None,
        "origin": build.origin,
        "started_by": build.started_by,
        "rebuild_of": build.rebuild_of,
        "pull_request": build.pull_request,
        "base_branch": build.base_branch,
        "fork": build.fork,
        "push": build.push,
        "queue": queue_position(build),
        "scheduled_for": _iso(build.scheduled_for),
    }


ORIGINS = ("push", "manual", "rebuild", "schedule")


def started_by_text(build: Build) -> str:
    """What started the build, in words: ``push``, ``manual run by ada``, ``rebuild of #12 by ada``."""
    who = f" by {build.started_by}" if build.started_by else ""
    if build.origin == "manual":
        return f"manual run{who}"
    if build.origin == "rebuild":
        return f"rebuild of #{build.rebuild_of}{who}" if build.rebuild_of else f"rebuild{who}"
    if build.origin == "schedule":
        return "schedule"
    return f"push{' by ' + build.author if build.author else ''}"


def get_build(session: Session, build_id: int) -> Build:
    build = session.get(Build, build_id)
    if build is None:
        raise NotFound(f"build {build_id} not found")
    return build


def log_lines(session: Session, build_id: int, after: int = 0, limit: int = 10_000) -> list[BuildLogLine]:
    query = (
        select(BuildLogLine)
        .where(BuildLogLine.build_id == build_id, BuildLogLine.seq > after)
        .order_by(BuildLogLine.seq)
        .limit(limit)
    )
    return list(session.scalars(query))
