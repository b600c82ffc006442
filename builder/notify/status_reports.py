"""What a build's commit status says, and reporting it to the build's Git host."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from builder.notify.commit_status import CommitStatus, report_with_retry
from builder.db.models import Build
from builder.secrets import SecretBox
from builder.triggers.services import status_target

DESCRIPTIONS = {
    "queued": "Build queued",
    "running": "Building the image",
    "succeeded": "Image pushed",
    "failed": "Build failed",
    "skipped": "Skipped: no changed file needs a build",
    "superseded": "Superseded by a newer push",
}


def commit_status(build: Build, state: str, public_url: str) -> CommitStatus:
    description = DESCRIPTIONS.get(state, state)
    if state == "succeeded" and build.digest:
        description = f"Pushed {build.image.rsplit('/', 1)[-1]}:{build.tags[0]}"
    elif state == "succeeded" and not build.push:
        description = "Image built (not pushed)"
    elif state == "failed" and build.error:
        description = f"Build failed: {build.error}"[:140]
    return CommitStatus(
        sha=build.commit,
        state="succeeded" if state == "skipped" else state,
        target_url=f"{public_url.rstrip('/')}/builds/{build.id}",
        description=description,
    )


def report_build_status(sessions: sessionmaker[Session], box: SecretBox, public_url: str,
                        build_id: int, state: str) -> bool | None:
    """Report ``state`` of a build; None when its trigger reports no statuses."""
    with sessions() as session:
        build = session.get(Build, build_id)
        if build is None or build.trigger is None:
            return None
        target = status_target(build.trigger, box)
        if target is None:
            return None
        status = commit_status(build, state, public_url)
    return report_with_retry(target, status)
