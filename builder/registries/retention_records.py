"""What retention did, as the pages and the API read it: ``RetentionDeletion`` rows (written by
``builder/registries/retention.py`` and ``builder/db/pruning.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from builder.db.models import Build, RetentionDeletion

# Final outcomes: a tag recorded so is never tried again. "kept" is not: the tags in its way may move.
DONE = ("deleted", "refused", "missing")
RETENTION_OUTCOMES = (*DONE, "kept")


def retention_records(session: Session, trigger_id: int | None = None, outcomes: Sequence[str] = (),
                      limit: int = 50, build_id: int | None = None, before: int | None = None) -> list[RetentionDeletion]:
    """The newest records of what retention deleted (or tried to), of one trigger (or build) or all, with
    one of ``outcomes`` (any, when empty); ``before``: only those with a smaller id (the next page's)."""
    query = select(RetentionDeletion).order_by(RetentionDeletion.id.desc()).limit(limit)
    if trigger_id is not None:
        query = query.where(RetentionDeletion.trigger_id == trigger_id)
    if build_id is not None:
        query = query.where(RetentionDeletion.build_id == build_id)
    if outcomes:
        query = query.where(RetentionDeletion.outcome.in_(outcomes))
    if before is not None:
        query = query.where(RetentionDeletion.id < before)
    return list(session.scalars(query))


def retention_to_dict(row: RetentionDeletion) -> dict[str, Any]:
    return {"id": row.id, "kind": row.kind, "trigger": row.trigger_id, "rule": row.rule_id, "build": row.build_id,
            "repository": row.repository, "tag": row.tag, "digest": row.digest, "count": row.count,
            "outcome": row.outcome, "detail": row.detail, "at": row.at.isoformat()}


def image_removal(session: Session, build: Build) -> dict[str, Any]:
    """What retention removed of one build's image: its tags gone from the registry, and whether its manifest
    went too (whichever build's tag took it: builds of the same image share one), so it can no longer be pulled."""
    gone = [row for row in retention_records(session, build_id=build.id, limit=1000)
            if row.outcome in ("deleted", "missing")]
    manifest = build.digest is not None and session.scalar(select(RetentionDeletion.id).where(
        RetentionDeletion.kind == "manifest", RetentionDeletion.outcome == "deleted",
        RetentionDeletion.repository == build.image, RetentionDeletion.digest == build.digest).limit(1)) is not None
    return {"tags": sorted({row.tag for row in gone if row.kind == "tag" and row.tag}),
            "at": max((row.at for row in gone), default=None), "manifest_deleted": manifest}
