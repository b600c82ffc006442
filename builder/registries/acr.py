"""Azure Container Registry webhooks.

Shape followed: Microsoft's "Azure Container Registry webhook reference"
(MicrosoftDocs ``articles/container-registry/container-registry-webhook-reference.md``):
one event per request, no envelope, ``Content-Type: application/json``
unless a custom one is configured. ``id``, ``timestamp``, ``action``
(``push``, ``delete``, ``chart_push``, ``chart_delete``, ``quarantine``, and
``ping`` from the portal's Ping button), ``target`` {``mediaType``, ``size``,
``digest``, ``length``, ``repository``, ``tag``; charts add ``name`` and
``version``} and ``request`` {``id``, ``host``, ``method``, ``useragent``}.
There is no actor field.

Decisions:

* ``action == "push"`` with a ``target.tag`` -> ``ImagePushed``; a push
  without a tag, and every other action, is ignored. The media type is not
  checked: ACR only notifies pushes of manifests.
* ``event_id`` is the payload's ``id`` (ACR sends one), else
  ``derived_id("acr", repository, tag, digest, timestamp)``.
* ``registry`` is ``request.host``; ``actor`` is None.
* A body without a string ``action`` is not an ACR webhook: ``InputError``
  (400). The content type is not checked (ACR lets the user override it).
"""

from __future__ import annotations

from typing import Mapping

from builder.errors import InputError
from builder.registries.common import (
    IgnoredEvent,
    Parsed,
    action_text,
    digest,
    image_pushed,
    mapping,
    native_id,
    read_object,
    registry_host,
    repository_name,
    short,
    text,
    timestamp_text,
)

NAME = "acr"

_NOT_DEPLOYED = {
    "ping": "ping (a test delivery from the portal)",
    "delete": "delete events are not deployed",
    "chart_push": "chart_push events are not deployed (Helm chart, not an image)",
    "chart_delete": "chart_delete events are not deployed",
}


def parse(headers: Mapping[str, str], body: bytes) -> list[Parsed]:
    payload = read_object(body)
    action = action_text(payload.get("action"))
    if action is None:
        raise InputError('not an Azure Container Registry webhook: no "action"')
    event_id = native_id(payload.get("id"))
    target = mapping(payload.get("target"))
    if action != "push":
        reason = _NOT_DEPLOYED.get(action, f"{short(action)} events are not deployed")
        return [IgnoredEvent(event_id, action, repository_name(target.get("repository")), reason)]
    return [
        image_pushed(
            NAME,
            action=action,
            event_id=event_id,
            registry=registry_host(mapping(payload.get("request")).get("host")),
            repository=target.get("repository"),
            tag=target.get("tag"),
            untagged="manifest push without a tag",
            digest=digest(target.get("digest")),
            media_type=text(target.get("mediaType")),
            pushed_at=timestamp_text(payload.get("timestamp")),
        )
    ]
