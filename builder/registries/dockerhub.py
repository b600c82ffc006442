"""Docker Hub repository webhooks.

Shape followed: Docker's "Webhooks" page (docs.docker.com, docker/docs
``content/manuals/docker-hub/repos/manage/webhooks.md``, "Example webhook
payload"): ``callback_url``, ``push_data`` {``pushed_at`` (epoch seconds),
``pusher``, ``tag``} and ``repository`` {``repo_name`` "namespace/name",
``namespace``, ``name``, ``owner``, ``repo_url``, ``is_private``, ...}.
Docker Hub has a single trigger (a push), sends no event header, no
signature and no delivery id; older payloads wrote ``pushed_at`` as a float
(1.417566161e+09) and listed ``push_data.images``.

Decisions:

* One ``ImagePushed`` per delivery; ``registry`` is ``"docker.io"``;
  ``digest`` and ``media_type`` are None (the payload has neither).
* ``repository`` is ``repo_name``, else ``namespace/name``.
* ``pushed_at`` is the epoch seconds as decimal text (a float that is a whole
  number is written as an integer, so both old and new payloads give the same
  text).
* ``event_id`` is ``derived_id("dockerhub", repository, tag, None, pushed_at)``:
  stable across redeliveries of one push, different for a later push of the
  same tag (``pushed_at`` is in whole seconds, so two pushes of one tag within
  the same second share an id).
* A body with neither a ``push_data`` nor a ``repository`` object is not a
  Docker Hub webhook: ``InputError`` (400). A push without a tag (old
  automated-build payloads) is ignored.
"""

from __future__ import annotations

from typing import Mapping

from builder.errors import InputError
from builder.registries.common import (
    Parsed,
    image_pushed,
    joined,
    mapping,
    read_object,
    text,
    timestamp_text,
)

NAME = "dockerhub"
REGISTRY = "docker.io"


def parse(headers: Mapping[str, str], body: bytes) -> list[Parsed]:
    payload = read_object(body)
    if not isinstance(payload.get("push_data"), dict) and not isinstance(payload.get("repository"), dict):
        raise InputError("not a Docker Hub webhook: no push_data or repository object")
    push_data = mapping(payload.get("push_data"))
    repository = mapping(payload.get("repository"))
    name = text(repository.get("repo_name")) or joined(repository.get("namespace"), repository.get("name"))
    return [
        image_pushed(
            NAME,
            action="push",
            event_id=None,
            registry=REGISTRY,
            repository=name,
            tag=push_data.get("tag"),
            untagged="push without a tag",
            pushed_at=timestamp_text(push_data.get("pushed_at")),
            actor=text(push_data.get("pusher")),
        )
    ]
