"""CNCF distribution notifications (``registry:2``, distribution v3, and registries built on it).

Shape followed: distribution's ``docs/notifications.md`` (the "Envelope" and
"Events" sections; the v1 example is tests/fixtures/registry/). The
registry POSTs ``{"events": [...]}``; each event has ``id``, ``timestamp``,
``action`` (``push``/``pull``/``mount``/``delete``), ``target`` (``mediaType``,
``digest``, ``repository``, ``url``, ``tag``), ``request`` (``host``, ...),
``actor`` (``name``) and ``source``. ``Content-Type`` is
``application/vnd.docker.distribution.events.v1+json`` (registry 2.x) or
``...events.v2+json`` (distribution 3.x); ``application/json`` is accepted too
(proxies and hand-made test deliveries). Any other type is a 415.

Only a ``push`` of an image manifest or index that names a ``target.tag`` is an
``ImagePushed``: blob (layer, config) pushes, manifests pushed by digest (the
per-platform manifests of a multi-arch push), pulls, mounts and deletes are
``IgnoredEvent``s. One envelope may hold many unrelated events, in no
guaranteed order; the result keeps the envelope's order, one entry per event.

Decisions:

* ``event_id`` is the event's ``id``; an event without one gets
  ``derived_id("distribution", repository, tag, digest, timestamp)``.
* ``registry`` is ``request.host``, else the host of ``target.url``.
* A bare event object (not wrapped in ``{"events": [...]}``) is refused with
  a 400: distribution always sends the envelope (all three fixtures are
  envelopes), and the bare shape is what ACR sends (use the ``acr`` parser).
* A malformed event inside a valid envelope (not an object, no action, no
  repository, invalid tag...) is an ``IgnoredEvent`` so the other events of
  the envelope still count.
"""

from __future__ import annotations

from typing import Any, Mapping

from builder.errors import InputError
from builder.forges.request import header
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
    url_host,
)

NAME = "distribution"

EVENTS_V1 = "application/vnd.docker.distribution.events.v1+json"
EVENTS_V2 = "application/vnd.docker.distribution.events.v2+json"
CONTENT_TYPES = frozenset({EVENTS_V1, EVENTS_V2, "application/json"})

MANIFEST_MEDIA_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    }
)

_NOT_DEPLOYED = {
    "pull": "pull events are not deployed",
    "delete": "delete events are not deployed",
    "mount": "mount events are not deployed (cross-repository blob mount)",
}


def parse(headers: Mapping[str, str], body: bytes) -> list[Parsed]:
    check_content_type(headers)
    payload = read_object(body)
    events = payload.get("events")
    if not isinstance(events, list):
        hint = " (got a bare event object)" if "action" in payload or "target" in payload else ""
        raise InputError(f'body must be a notification envelope {{"events": [...]}}{hint}')
    return [_event(event) for event in events]


def check_content_type(headers: Mapping[str, str]) -> None:
    """415 unless ``Content-Type`` is one of ``CONTENT_TYPES`` (parameters such as charset allowed)."""
    raw = header(headers, "Content-Type")
    media_type = raw.split(";", 1)[0].strip().lower() if isinstance(raw, str) else ""
    if media_type not in CONTENT_TYPES:
        shown = short(raw) if media_type else "none"
        raise InputError(
            f"unsupported Content-Type {shown} for a distribution notification "
            f"(expected {EVENTS_V1}, {EVENTS_V2} or application/json)",
            status=415,
        )


def media_type_base(media_type: str) -> str:
    return media_type.split(";", 1)[0].strip().lower()


def _event(event: Any) -> Parsed:
    if not isinstance(event, dict):
        return IgnoredEvent(None, None, None, "event is not a JSON object")
    event_id = native_id(event.get("id"))
    action = action_text(event.get("action"))
    target = mapping(event.get("target"))
    repository = repository_name(target.get("repository"))
    if action is None:
        return IgnoredEvent(event_id, None, repository, "event without an action")
    if action != "push":
        reason = _NOT_DEPLOYED.get(action, f"{short(action)} events are not deployed")
        return IgnoredEvent(event_id, action, repository, reason)
    media_type = text(target.get("mediaType"))
    url = text(target.get("url")) or ""
    if media_type is not None:
        is_manifest = media_type_base(media_type) in MANIFEST_MEDIA_TYPES
    else:
        # Registries always send mediaType; without it, trust the URL's API path.
        is_manifest = "/manifests/" in url
    if not is_manifest:
        return IgnoredEvent(event_id, action, repository, "layer blob push (no manifest)")
    request = mapping(event.get("request"))
    return image_pushed(
        NAME,
        action=action,
        event_id=event_id,
        registry=registry_host(request.get("host")) or url_host(url),
        repository=target.get("repository"),
        tag=target.get("tag"),
        untagged="manifest push without a tag",
        digest=digest(target.get("digest")),
        media_type=media_type,
        pushed_at=timestamp_text(event.get("timestamp")),
        actor=text(mapping(event.get("actor")).get("name")),
    )
