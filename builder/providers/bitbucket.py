"""Bitbucket Cloud and Bitbucket Data Center (Server) webhooks, told apart by event key.

Cloud sends ``X-Event-Key: repo:push``, ``X-Request-UUID``, ``X-Hook-UUID`` and
``X-Attempt-Number``; Data Center sends ``X-Event-Key: repo:refs_changed`` and
``X-Request-Id``. Both sign with ``X-Hub-Signature: sha256=<hex HMAC-SHA256 of
the raw body>`` when a secret is set. Neither payload lists changed files.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from builder.events import ZERO_SHA, Ignored, PushEvent
from builder.providers.request import (
    HookInfo,
    clean_text,
    commit_id,
    dig,
    header,
    load_json,
    previous_commit,
    read_ref,
    require_hmac_sha256,
    shown,
)

NAME = "bitbucket"
CLOUD_PUSH = "repo:push"
SERVER_PUSH = "repo:refs_changed"
# Data Center's "Test connection" button.
PING = "diagnostics:ping"
CLOUD_REF_PREFIXES = {"branch": "refs/heads/", "tag": "refs/tags/"}
SERVER_BUILT_CHANGES = ("ADD", "UPDATE")
# "Jane Doe <jane@example.com>" -> "Jane Doe"
_EMAIL_SUFFIX = re.compile(r"\s*<[^<>]*>\s*$")


def describe(headers: Mapping[str, str], body: bytes) -> HookInfo:
    payload = load_json(body)
    delivery = header(headers, "X-Request-UUID") or header(headers, "X-Request-Id")
    return HookInfo(
        event=header(headers, "X-Event-Key"),
        delivery_id=delivery,
        repository=_repository(payload),
        dedupe_key=f"{NAME}:{delivery}" if delivery else None,
    )


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> None:
    require_hmac_sha256(body, secret, header(headers, "X-Hub-Signature"), prefix="sha256=")


def parse(headers: Mapping[str, str], body: bytes) -> tuple[PushEvent, ...]:
    event = header(headers, "X-Event-Key")
    if event == PING:
        raise Ignored("ping", status=200)
    if event not in (CLOUD_PUSH, SERVER_PUSH):
        raise Ignored(f"event {shown(event)} is recorded but not built")
    payload = load_json(body)
    repository = _repository(payload) or ""
    if event == CLOUD_PUSH:
        changes = dig(payload, "push", "changes")
        parse_change = _cloud_change
    else:
        changes = payload.get("changes")
        parse_change = _server_change
    if not isinstance(changes, list) or not changes:
        raise Ignored("push without changes")
    built: list[PushEvent] = []
    deleted: list[str] = []
    for change in changes:
        if not isinstance(change, dict):
            continue
        result = parse_change(change, repository, payload)
        if isinstance(result, PushEvent):
            built.append(result)
        elif result:
            deleted.append(result)
    if built:
        return tuple(built)
    if deleted and len(deleted) == len(changes):
        verb = "was" if len(deleted) == 1 else "were"
        raise Ignored(f"{', '.join(deleted)} {verb} deleted")
    raise Ignored("push without a branch or tag to build")


def _cloud_change(change: dict[str, Any], repository: str, payload: dict[str, Any]) -> PushEvent | str | None:
    """A PushEvent, a description of a deleted ref, or None for anything else."""
    new = change.get("new")
    if new is None:
        old = change.get("old")
        if isinstance(old, dict) and _cloud_ref_type(old):
            return f"{old['type']} {shown(old.get('name'))}"
        return "a ref"
    ref_type = _cloud_ref_type(new)
    if ref_type is None:
        return None
    name, commit = new.get("name"), commit_id(dig(new, "target", "hash"))
    if not isinstance(name, str) or commit is None or commit == ZERO_SHA:
        return None
    try:
        ref, ref_type, name = read_ref(CLOUD_REF_PREFIXES[ref_type] + name)
    except Ignored:
        return None
    target = new["target"]
    return PushEvent(
        provider=NAME,
        repository=repository,
        ref=ref,
        ref_type=ref_type,
        ref_name=name,
        commit=commit,
        author=_cloud_author(target, payload),
        message=clean_text(target.get("message")),
        before=previous_commit(dig(change, "old", "target", "hash")),
    )


def _cloud_ref_type(ref: dict[str, Any]) -> str | None:
    """``branch`` or ``tag`` when a Cloud ``new``/``old`` names one, else None."""
    kind = ref.get("type") if isinstance(ref, dict) else None
    return kind if isinstance(kind, str) and kind in CLOUD_REF_PREFIXES else None


def _server_change(change: dict[str, Any], repository: str, payload: dict[str, Any]) -> PushEvent | str | None:
    try:
        ref, ref_type, ref_name = read_ref(dig(change, "ref", "id") or change.get("refId"))
    except Ignored:
        return None
    kind = change.get("type")
    if kind == "DELETE":
        return f"{ref_type} {shown(ref_name)}"
    commit = commit_id(change.get("toHash"))
    if kind not in SERVER_BUILT_CHANGES or commit is None or commit == ZERO_SHA:
        return None
    # Data Center sends no commit details; the pusher is the best author there is.
    author = dig(payload, "actor", "displayName") or dig(payload, "actor", "name")
    return PushEvent(
        provider=NAME,
        repository=repository,
        ref=ref,
        ref_type=ref_type,
        ref_name=ref_name,
        commit=commit,
        author=clean_text(author, 255),
        before=previous_commit(change.get("fromHash")),
    )


def _cloud_author(target: dict[str, Any], payload: dict[str, Any]) -> str | None:
    name = dig(target, "author", "user", "display_name")
    if not name:
        raw = dig(target, "author", "raw")
        name = _EMAIL_SUFFIX.sub("", raw) if isinstance(raw, str) else None
    if not name:
        name = dig(payload, "actor", "display_name")
    return clean_text(name, 255) or None


def _repository(payload: dict[str, Any]) -> str | None:
    """Cloud: ``workspace/slug``; Data Center: ``PROJECTKEY/slug``, spelled as sent."""
    full_name = dig(payload, "repository", "full_name")
    if isinstance(full_name, str) and full_name:
        return full_name
    key, slug = dig(payload, "repository", "project", "key"), dig(payload, "repository", "slug")
    if isinstance(key, str) and key and isinstance(slug, str) and slug:
        return f"{key}/{slug}"
    return None
