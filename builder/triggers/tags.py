"""Image references and the tags a push produces."""

from __future__ import annotations

import re

from builder.errors import InputError
from builder.intake.events import PushEvent

_TAG_INVALID = re.compile(r"[^A-Za-z0-9_.-]+")
_TAG_VALID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_REPOSITORY_VALID = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")


def sanitise_tag(raw: str) -> str:
    """Turn a ref name into a valid Docker tag (``feature/x`` -> ``feature-x``)."""
    tag = _TAG_INVALID.sub("-", raw).lstrip(".-")[:128]
    if not tag:
        raise InputError(f"{raw!r} cannot be turned into a Docker tag")
    return tag


def is_valid_tag(tag: str) -> bool:
    return _TAG_VALID.fullmatch(tag) is not None


def render_tags(event: PushEvent, default_branch: str) -> list[str]:
    """The default tags: branch + short sha (+ latest on the default branch), or the tag."""
    if event.ref_type == "tag":
        return [sanitise_tag(event.ref_name)]
    tags = [sanitise_tag(event.ref_name), event.short_sha]
    if event.ref_name == default_branch:
        tags.append("latest")
    return list(dict.fromkeys(tags))


def image_repository(image: str, registry: str) -> str:
    """``team/app`` -> ``<registry>/team/app``; a name with its own registry host stays."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = registry, image
    if not _REPOSITORY_VALID.fullmatch(path):
        raise InputError(
            f"image {image!r} is not a valid repository name "
            "(lower-case letters, digits and . _ - separators, parts joined by /)"
        )
    return f"{host}/{path}"
