"""Harbor project webhooks (HTTP endpoint, "Default" or "CloudEvents" payload format).

Shape followed: Harbor's "Configure Webhook Notifications" page (goharbor/website
``docs/working-with-projects/project-configuration/configure-webhooks.md``,
"Payload Format"): ``type`` (``PUSH_ARTIFACT``, ``PULL_ARTIFACT``,
``DELETE_ARTIFACT``, ``SCANNING_COMPLETED``, ``QUOTA_EXCEED``, ``REPLICATION``,
...), ``occur_at`` (epoch seconds), ``operator`` and ``event_data``
{``resources``: [{``digest``, ``tag``, ``resource_url`` "host/project/name:tag"}],
``repository``: {``name``, ``namespace``, ``repo_full_name``, ``repo_type``,
``date_created``}}.

Also read:

* the CloudEvents format (Harbor 2.10+, ``Content-Type:
  application/cloudevents+json``): ``specversion``, ``id``, ``type``
  ``harbor.artifact.pushed``/``.pulled``/``.deleted``/..., ``time``,
  ``operator``, and the Default ``event_data`` object as ``data`` (as Harbor's
  own notifier writes it);
* Harbor 1.x type names (``pushImage``, ``pullImage``, ``deleteImage``).

Decisions:

* One ``ImagePushed`` per tagged resource; a resource pushed by digest only
  (empty ``tag``) is ignored ("artifact push without a tag").
* ``registry`` is the host of the resource's ``resource_url``;
  ``repository`` is ``repo_full_name``, else the path of ``resource_url``,
  else ``namespace/name``; ``digest`` is the resource's ``digest``;
  ``media_type`` is None (not in the payload); ``actor`` is ``operator``;
  ``pushed_at`` is ``occur_at`` as decimal text (CloudEvents: ``time``).
* ``event_id``: Default format has no id, so
  ``derived_id("harbor", repository, tag, digest, occur_at)``; CloudEvents
  has one: its ``id`` (``id#n`` for the n-th resource when there are several).
* Every other type is ignored. A body without a string ``type`` is not a
  Harbor webhook: ``InputError`` (400).
"""

from __future__ import annotations

from typing import Any, Mapping

from builder.errors import InputError
from builder.registries.common import (
    IgnoredEvent,
    Parsed,
    action_text,
    derived_id,
    digest,
    image_pushed,
    joined,
    mapping,
    native_id,
    read_object,
    repository_name,
    short,
    split_reference,
    text,
    timestamp_text,
)

NAME = "harbor"

PUSH_TYPES = frozenset({"PUSH_ARTIFACT", "pushImage", "harbor.artifact.pushed"})
_NOT_DEPLOYED = {
    "PULL_ARTIFACT": "pull events are not deployed",
    "pullImage": "pull events are not deployed",
    "harbor.artifact.pulled": "pull events are not deployed",
    "DELETE_ARTIFACT": "delete events are not deployed",
    "deleteImage": "delete events are not deployed",
    "harbor.artifact.deleted": "delete events are not deployed",
}


def parse(headers: Mapping[str, str], body: bytes) -> list[Parsed]:
    payload = read_object(body)
    event_type = action_text(payload.get("type"))
    if event_type is None:
        raise InputError('not a Harbor webhook: no "type"')
    cloudevents = "specversion" in payload
    data = mapping(payload.get("data") if cloudevents else payload.get("event_data"))
    repository_info = mapping(data.get("repository"))
    repository = text(repository_info.get("repo_full_name"))
    fallback = joined(repository_info.get("namespace"), repository_info.get("name"))
    shown = repository_name(repository or fallback)
    ce_id = native_id(payload.get("id")) if cloudevents else None
    if event_type not in PUSH_TYPES:
        reason = _NOT_DEPLOYED.get(event_type, f"{short(event_type)} events are not deployed")
        return [IgnoredEvent(ce_id, event_type, shown, reason)]
    resources = data.get("resources")
    if not isinstance(resources, list) or not resources:
        return [IgnoredEvent(ce_id, event_type, shown, "artifact push without resources")]
    pushed_at = timestamp_text(payload.get("time") if cloudevents else payload.get("occur_at"))
    actor = text(payload.get("operator"))
    results: list[Parsed] = []
    for index, resource in enumerate(resources):
        event_id = ce_id if ce_id is None or len(resources) == 1 else native_id(f"{ce_id}#{index}")
        if ce_id is not None and event_id is None:  # too long with the suffix
            event_id = derived_id(NAME, ce_id, str(index))
        results.append(
            _resource(resource, event_type, event_id, repository, fallback, pushed_at, actor)
        )
    return results


def _resource(
    resource: Any,
    event_type: str,
    event_id: str | None,
    repository: str | None,
    fallback: str | None,
    pushed_at: str | None,
    actor: str | None,
) -> Parsed:
    if not isinstance(resource, dict):
        shown = repository_name(repository or fallback)
        return IgnoredEvent(event_id, event_type, shown, "resource is not a JSON object")
    host, url_path = split_reference(resource.get("resource_url"))
    return image_pushed(
        NAME,
        action=event_type,
        event_id=event_id,
        registry=host,
        repository=repository or url_path or fallback,
        tag=resource.get("tag"),
        untagged="artifact push without a tag",
        digest=digest(resource.get("digest")),
        pushed_at=pushed_at,
        actor=actor,
    )
