"""A rule's previous image: the layer cache of its next build, and what an unchanged rebuild pushes.

The classic builder uses the rule's last image as ``cache_from`` when the engine still has it.
BuildKit takes it from the registry: every BuildKit image carries its inline cache
(``BUILDKIT_INLINE_CACHE=1``), so an engine that never built it still gets cache hits.

That inline cache record lists the cache graph in an order that differs from one build to the
next, so two builds of the same commit differ in that record alone. ``keep_unchanged`` looks
past it: when the new image equals the previous one (``previous_build``: the same commit's last
image if the rule has one, else the rule's last) in everything else (layers, config,
history, labels, whose ``created`` is the commit's time), the previous image is tagged and
pushed again, and the rebuild has the same digest.
"""

from __future__ import annotations

from typing import Any, Callable

import docker
from docker.errors import DockerException, ImageNotFound
from docker.models.images import Image
from requests.exceptions import RequestException
from sqlalchemy import case, select
from sqlalchemy.orm import Session, sessionmaker

from builder.builds.image.engines import BuildEngine
from builder.builds.image import local_images
from builder.builds.image.classic import local_image
from builder.db.models import Build, BuildState

Log = Callable[[str], None]

# What makes two images the same image, besides the inline cache record (which docker-py does not show).
_SAME = ("RootFS", "Config", "Architecture", "Os", "Variant", "Created", "Author")


def previous_build(sessions: sessionmaker[Session], build: Build) -> Build | None:
    """The rule's last succeeded build of this commit, else the rule's last succeeded build.

    A rebuild of an older commit (the rule has pushed newer ones since) is thus compared with, and
    cached from, that commit's own image, so an unchanged rebuild pushes that image's digest."""
    if build.rule_id is None:
        return None
    with sessions() as session:
        return session.scalars(
            select(Build)
            .where(Build.rule_id == build.rule_id, Build.state == BuildState.SUCCEEDED.value, Build.id != build.id,
                   Build.fork.is_distinct_from("untrusted"))  # a fork's image never seeds the cache
            .order_by(case((Build.commit == build.commit, 0), else_=1), Build.id.desc())
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
                   log: Log, auth: dict[str, str] | None = None) -> None:
    """When ``image_id`` is the previous image but for BuildKit's inline cache record, tag the previous
    image instead: the push gives the previous digest.

    The engine keeps only each rule's newest image (``local_images``), so the image of an older commit
    being rebuilt is pulled back by digest (its layers are the ones just built, so only its manifest and
    config travel), and removed again when it differs after all."""
    if previous is None or not previous.digest or previous.image != build.image:
        return
    reference = f"{previous.image}@{previous.digest}"
    try:
        new = client.images.get(image_id)
        old, pulled = _local_or_pulled(client, reference, previous.commit == build.commit, auth)
    except (DockerException, RequestException):
        return
    if old is None or old.id == new.id:
        return
    if _essentials(old.attrs) != _essentials(new.attrs):
        if pulled:
            local_images.remove_untagged(client, [old.id])
        return
    for tag in build.tags:
        old.tag(build.image, tag)
    log(f"Unchanged since build {previous.id}: its image {old.id} is pushed again (only BuildKit's inline "
        "cache record differed)")


def _local_or_pulled(client: docker.DockerClient, reference: str, same_commit: bool,
                     auth: dict[str, str] | None) -> tuple[Image | None, bool]:
    """The engine's image ``reference`` (``image@digest``), pulled when it is of the same commit."""
    try:
        return client.images.get(reference), False
    except ImageNotFound:
        if not same_commit:  # another commit's image: not worth a pull to compare
            return None, False
    if local_images.pull(client, reference, auth) is not None:
        return None, False
    return client.images.get(reference), True


def _essentials(attrs: dict[str, Any]) -> dict[str, Any]:
    return {key: attrs.get(key) for key in _SAME}
