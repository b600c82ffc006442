"""A rule's previous image: the layer cache of its next build, and what an unchanged rebuild pushes.

The classic builder uses the rule's last image as ``cache_from`` when the engine still has it.
BuildKit takes it from the registry: every BuildKit image carries its inline cache
(``BUILDKIT_INLINE_CACHE=1``), so an engine that never built it still gets cache hits.

That inline cache record lists the cache graph in an order that differs from one build to the
next, so two builds of the same commit differ in that record alone. ``keep_unchanged`` looks
past it: when the new image equals the rule's previous one in everything else (layers, config,
history, labels, whose ``created`` is the commit's time), the previous image is tagged and
pushed again, and the rebuild has the same digest.
"""

from __future__ import annotations

from typing import Any, Callable

import docker
from docker.errors import DockerException
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from builder.builds.image.engines import BuildEngine
from builder.builds.image.classic import local_image
from builder.db.models import Build, BuildState

Log = Callable[[str], None]

# What makes two images the same image, besides the inline cache record (which docker-py does not show).
_SAME = ("RootFS", "Config", "Architecture", "Os", "Variant", "Created", "Author")


def previous_build(sessions: sessionmaker[Session], build: Build) -> Build | None:
    """The rule's last succeeded build before this one."""
    if build.rule_id is None:
        return None
    with sessions() as session:
        return session.scalars(
            select(Build)
            .where(Build.rule_id == build.rule_id, Build.state == BuildState.SUCCEEDED.value, Build.id != build.id,
                   Build.fork.is_distinct_from("untrusted"))  # a fork's image never seeds the cache
            .order_by(Build.id.desc())
            .limit(1)
        ).first()


def cache_sources(client: docker.DockerClient, previous: Build | None, engine: BuildEngine, log: Log
                  ) -> tuple[str, ...]:
    """The rule's last image as the build's layer cache (see the module's docstring)."""
    if previous is None:
        return ()
    if engine.buildkit:
        if not previous.digest:
            return ()
        reference = f"{previous.image}@{previous.digest}"
        log(f"Using {reference} (build {previous.id}) as the layer cache (its inline cache, from the registry)")
        return (reference,)
    reference = f"{previous.image}:{previous.tags[0]}"
    if not local_image(client, reference):
        return ()
    log(f"Using {reference} (build {previous.id}) as the layer cache")
    return (reference,)


def keep_unchanged(client: docker.DockerClient, image_id: str, build: Build, previous: Build | None,
                   log: Log) -> None:
    """When ``image_id`` is the rule's previous image but for BuildKit's inline cache record, tag the
    previous image instead (the engine must still have it): the push gives the previous digest."""
    if previous is None or not previous.digest or previous.image != build.image:
        return
    try:
        new = client.images.get(image_id)
        old = client.images.get(f"{previous.image}@{previous.digest}")
    except DockerException:
        return
    if old.id == new.id or _essentials(old.attrs) != _essentials(new.attrs):
        return
    for tag in build.tags:
        old.tag(build.image, tag)
    log(f"Unchanged since build {previous.id}: its image {old.id} is pushed again (only BuildKit's inline "
        "cache record differed)")


def _essentials(attrs: dict[str, Any]) -> dict[str, Any]:
    return {key: attrs.get(key) for key in _SAME}
