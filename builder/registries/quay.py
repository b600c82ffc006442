"""Quay (quay.io and Red Hat Quay) ``repo_push`` notifications, delivered by a webhook.

Shape followed: Red Hat Quay "Repository Notifications" documentation,
"Repository Push" example (also what Quay's ``RepoPushEvent.get_sample_data``
builds): ``repository`` "namespace/name", ``namespace``, ``name``,
``docker_url`` "quay.io/namespace/name", ``homepage`` and ``updated_tags``
(a list of tag names). The 2013 quay.io example wrote ``updated_tags`` as an
object ``{tag: image_id}``; both forms are read (the object's keys are the
tags; its values are v1 image ids, not manifest digests).

Decisions:

* One ``ImagePushed`` per updated tag, in the payload's order (duplicates
  dropped); ``registry`` is the host of ``docker_url``; ``repository`` is
  ``repository``, else the path of ``docker_url``, else ``namespace/name``.
  ``digest``, ``media_type``, ``pushed_at`` and ``actor`` are None: the
  notification carries none of them.
* ``event_id`` is ``derived_id("quay", repository, tag, None, None[, image_id])``.
  Quay's repo_push has no id, no timestamp and no digest, so **two pushes of
  the same tag produce the same event_id** (only the legacy object form adds
  the image id). A de-duplication store must not keep Quay ids for long.
* Other Quay notifications sent to the same URL (build queued/started/
  success/failure, vulnerability found, mirror sync...) have no
  ``updated_tags`` and are ignored; a body that is not recognisably a Quay
  notification (no ``updated_tags``, ``repository`` or ``docker_url``), or
  whose ``updated_tags`` is neither a list nor an object, is an
  ``InputError`` (400).
"""

from __future__ import annotations

from typing import Any, Mapping

from builder.errors import InputError
from builder.registries.common import (
    IgnoredEvent,
    Parsed,
    image_pushed,
    joined,
    read_object,
    repository_name,
    short,
    split_reference,
    text,
)

NAME = "quay"
ACTION = "repo_push"


def parse(headers: Mapping[str, str], body: bytes) -> list[Parsed]:
    payload = read_object(body)
    registry, docker_url_path = split_reference(payload.get("docker_url"))
    repository = (
        text(payload.get("repository"))
        or docker_url_path
        or joined(payload.get("namespace"), payload.get("name"))
    )
    updated = payload.get("updated_tags")
    if updated is None:
        if "updated_tags" not in payload and not (
            "repository" in payload or "docker_url" in payload
        ):
            raise InputError("not a Quay notification: no updated_tags, repository or docker_url")
        reason = (
            "build notifications are not deployed (the push after a build sends repo_push)"
            if "build_id" in payload
            else "not a repository push notification (no updated_tags)"
        )
        return [IgnoredEvent(None, None, _shown(repository), reason)]
    tags = _tags(updated)
    if not tags:
        return [IgnoredEvent(None, ACTION, _shown(repository), "repository push without updated tags")]
    results: list[Parsed] = []
    for tag, image_id in tags:
        if not isinstance(tag, str):
            results.append(IgnoredEvent(None, ACTION, _shown(repository), f"tag {short(tag)} is not a string"))
            continue
        results.append(
            image_pushed(
                NAME,
                action=ACTION,
                event_id=None,
                registry=registry,
                repository=repository,
                tag=tag,
                untagged="push of an empty tag name",
                id_extra=(image_id,) if image_id is not None else (),
            )
        )
    return results


def _tags(updated: Any) -> list[tuple[Any, str | None]]:
    if isinstance(updated, list):
        pairs = [(tag, None) for tag in updated]
    elif isinstance(updated, dict):
        pairs = [(tag, text(image_id)) for tag, image_id in updated.items()]
    else:
        raise InputError("updated_tags must be a list of tag names")
    seen: set[str] = set()
    unique: list[tuple[Any, str | None]] = []
    for tag, image_id in pairs:
        if isinstance(tag, str):
            if tag in seen:
                continue
            seen.add(tag)
        unique.append((tag, image_id))
    return unique


def _shown(repository: str | None) -> str | None:
    return repository_name(repository)
