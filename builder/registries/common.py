"""What every registry notification parser shares: the two results and careful field readers.

Nothing here trusts the payload: each reader takes ``Any`` and answers a clean
value or None, so a parser never raises anything but ``InputError``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import reprlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from builder.errors import InputError
from builder.forges.request import clean_text, load_json
from builder.triggers.tags import is_valid_tag


@dataclass(frozen=True)
class ImagePushed:
    """A tagged image manifest that landed in a registry: something a deployment can follow."""

    source: str  # "distribution" | "dockerhub" | "quay" | "harbor" | "acr"
    # Unique id for de-duplication: the registry's own event id where the payload has one,
    # else ``derived_id()`` of the payload (see each parser's docstring).
    event_id: str
    registry: str | None  # host[:port] as the event names it
    repository: str  # "acme/widget", no host
    tag: str | None
    digest: str | None  # manifest digest, when the payload has it
    media_type: str | None
    pushed_at: str | None  # timestamp text as sent (epoch seconds as decimal text)
    actor: str | None


@dataclass(frozen=True)
class IgnoredEvent:
    """A valid notification (or one event of an envelope) that deploys nothing, and why."""

    event_id: str | None
    action: str | None
    repository: str | None
    reason: str


Parsed = ImagePushed | IgnoredEvent

_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]+")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?")
_MAX_NAME = 255
_MAX_ACTION = 64


def read_object(body: Any) -> dict[str, Any]:
    """The request body as a JSON object, or ``InputError`` (400)."""
    if not isinstance(body, (bytes, bytearray)):
        raise InputError("body must be bytes")
    return load_json(bytes(body))


def text(value: Any) -> str | None:
    """A non-blank string, else None."""
    return value if isinstance(value, str) and value.strip() else None


def native_id(value: Any) -> str | None:
    """An event id the payload carries (a non-blank string of sane length a database can store), else None."""
    value = text(value)
    return value if value is not None and len(value) <= _MAX_NAME and clean_text(value) == value else None


def action_text(value: Any) -> str | None:
    """An event's action or type as recorded: non-blank text without NUL or lone surrogates, at most 64 characters."""
    value = text(value)
    return (clean_text(value) or "")[:_MAX_ACTION] if value is not None else None


def mapping(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (so ``.get`` is always safe)."""
    return value if isinstance(value, dict) else {}


def timestamp_text(value: Any) -> str | None:
    """A timestamp as text: strings as sent, epoch numbers as decimal text (1.4e9 -> "1400000000")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    return text(value)


def digest(value: Any) -> str | None:
    """``algorithm:encoded`` as the OCI spec writes a digest, else None."""
    value = text(value)
    return value if value and len(value) <= _MAX_NAME and _DIGEST.fullmatch(value) else None


def registry_host(value: Any) -> str | None:
    """``host[:port]`` when ``value`` is exactly that, else None."""
    value = text(value)
    if value is None or len(value) > _MAX_NAME or not _HOST.fullmatch(value):
        return None
    return value


def url_host(value: Any) -> str | None:
    """The ``host[:port]`` of an absolute URL (user info dropped), else None."""
    value = text(value)
    if value is None:
        return None
    try:
        netloc = urlsplit(value).netloc
    except ValueError:
        return None
    return registry_host(netloc.rpartition("@")[2])


def split_reference(value: Any) -> tuple[str | None, str | None]:
    """``[scheme://]host[:port]/ns/name[:tag][@digest]`` -> (host, "ns/name").

    The first path part is a host only when it looks like one (has a dot or a
    port, or is ``localhost``), as Docker reads image references.
    """
    value = text(value)
    if value is None:
        return None, None
    if "://" in value:
        value = value.split("://", 1)[1]
    value = value.split("@", 1)[0]
    host: str | None = None
    first, slash, rest = value.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, value = registry_host(first), rest
    head, slash, last = value.rpartition("/")
    last = last.split(":", 1)[0]
    path = f"{head}/{last}" if slash else last
    return host, repository_name(path)


def repository_name(value: Any) -> str | None:
    """A valid repository path (``acme/widget``), else None."""
    value = text(value)
    if value is None or len(value) > _MAX_NAME or not _REPOSITORY.fullmatch(value):
        return None
    return value


def joined(namespace: Any, name: Any) -> str | None:
    """``namespace/name`` from two payload fields, when both are strings."""
    namespace, name = text(namespace), text(name)
    return f"{namespace}/{name}" if namespace and name else None


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 120
_REPR.maxlevel = 3


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters, for reasons and error messages.

    Built with ``reprlib``: a huge or deeply nested value is never written out whole.
    """
    shown = _REPR.repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def derived_id(source: str, *parts: str | None) -> str:
    """A stable id for payloads that carry none: sha256 over the source and the given fields.

    The fields are JSON-encoded as a list (ASCII, so any string hashes), which
    keeps ("a/b", "c") and ("a", "b/c") apart.
    """
    blob = json.dumps([source, *parts], separators=(",", ":"))
    return hashlib.sha256(blob.encode("ascii")).hexdigest()


def image_pushed(
    source: str,
    *,
    action: str | None,
    event_id: str | None,
    registry: str | None,
    repository: Any,
    tag: Any,
    untagged: str,
    digest: str | None = None,
    media_type: str | None = None,
    pushed_at: str | None = None,
    actor: str | None = None,
    id_extra: tuple[str | None, ...] = (),
) -> Parsed:
    """An ``ImagePushed``, or an ``IgnoredEvent`` when the repository or tag is missing or invalid.

    ``untagged`` is the reason recorded for a push without a tag. Without an
    ``event_id`` one is derived from source, repository, tag, digest, pushed_at
    and ``id_extra``.
    """
    raw_repository = text(repository)
    name = repository_name(raw_repository)
    if raw_repository is None:
        return IgnoredEvent(event_id, action, None, "push without a repository")
    if name is None:
        return IgnoredEvent(event_id, action, None, f"invalid repository name {short(raw_repository)}")
    tag_text = text(tag)
    if tag_text is None:
        return IgnoredEvent(event_id, action, name, untagged)
    if not is_valid_tag(tag_text):
        return IgnoredEvent(event_id, action, name, f"invalid tag {short(tag_text)}")
    if event_id is None:
        event_id = derived_id(source, name, tag_text, digest, pushed_at, *id_extra)
    return ImagePushed(
        source=source,
        event_id=event_id,
        registry=registry,
        repository=name,
        tag=tag_text,
        digest=digest,
        media_type=media_type,
        pushed_at=pushed_at,
        actor=actor,
    )
