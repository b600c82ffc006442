"""Gitea and Forgejo webhooks.

Each delivery names its event in several header families at once
(``X-Gitea-Event``, ``X-Forgejo-Event``, ``X-Gogs-Event``, ``X-GitHub-Event``),
each with a matching ``*-Delivery`` GUID. ``X-Gitea-Signature`` (or
``X-Forgejo-Signature``) is the hex HMAC-SHA256 of the raw body, no prefix.
"""

from __future__ import annotations

from typing import Any, Mapping

from builder.events import ZERO_SHA, Ignored, PushEvent, previous_commit, split_ref
from builder.providers.request import HookInfo, dig, header, load_json, require_hmac_sha256, touched_files

NAME = "gitea"
EVENT_HEADERS = ("X-Gitea-Event", "X-Forgejo-Event", "X-Gogs-Event", "X-GitHub-Event")
DELIVERY_HEADERS = ("X-Gitea-Delivery", "X-Forgejo-Delivery", "X-Gogs-Delivery", "X-GitHub-Delivery")
SIGNATURE_HEADERS = ("X-Gitea-Signature", "X-Forgejo-Signature")
# Branch/tag creation and deletion also arrive as push events, which are built.
REF_EVENTS = ("create", "delete")


def describe(headers: Mapping[str, str], body: bytes) -> HookInfo:
    payload = load_json(body)
    delivery = _first_header(headers, DELIVERY_HEADERS)
    repository = dig(payload, "repository", "full_name")
    return HookInfo(
        event=_first_header(headers, EVENT_HEADERS),
        delivery_id=delivery,
        repository=repository if isinstance(repository, str) else None,
        dedupe_key=f"{NAME}:{delivery}" if delivery else None,
    )


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> None:
    require_hmac_sha256(body, secret, _first_header(headers, SIGNATURE_HEADERS))


def parse(headers: Mapping[str, str], body: bytes) -> tuple[PushEvent, ...]:
    event = _first_header(headers, EVENT_HEADERS)
    if event in REF_EVENTS:
        payload = load_json(body)
        what = f"{payload.get('ref_type') or 'ref'} {payload.get('ref')!r}"
        raise Ignored(f"{event} of {what} is recorded, not built (the push event covers it)")
    if event != "push":
        raise Ignored(f"event {event!r} is recorded but not built")
    payload = load_json(body)
    ref = payload.get("ref")
    if not isinstance(ref, str):
        raise Ignored("push without a ref")
    ref_type, ref_name = split_ref(ref)
    commit = payload.get("after")
    if commit == ZERO_SHA:
        raise Ignored(f"{ref_type} {ref_name!r} was deleted")
    if not isinstance(commit, str) or not commit:
        raise Ignored("push without a head commit")
    head = _head_commit(payload, commit)
    return (
        PushEvent(
            provider=NAME,
            repository=str(dig(payload, "repository", "full_name") or ""),
            ref=ref,
            ref_type=ref_type,
            ref_name=ref_name,
            commit=commit,
            author=_author(head, payload),
            message=head.get("message") if isinstance(head.get("message"), str) else None,
            changed_files=_changed_files(payload),
            before=previous_commit(payload.get("before")),
        ),
    )


def _first_header(headers: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = header(headers, name)
        if value:
            return value
    return None


def _head_commit(payload: dict[str, Any], commit: str) -> dict[str, Any]:
    """``head_commit`` (newer versions), else the listed commit ``after`` names, else the last."""
    head = payload.get("head_commit")
    if isinstance(head, dict) and head:
        return head
    commits = [item for item in payload.get("commits") or () if isinstance(item, dict)]
    for item in commits:
        if item.get("id") == commit:
            return item
    return commits[-1] if commits else {}


def _author(head: dict[str, Any], payload: dict[str, Any]) -> str | None:
    name = dig(head, "author", "username") or dig(head, "author", "name")
    if not name:
        name = (
            dig(payload, "pusher", "login")
            or dig(payload, "pusher", "username")
            or dig(payload, "sender", "login")
        )
    return name if isinstance(name, str) else None


def _changed_files(payload: dict[str, Any]) -> tuple[str, ...] | None:
    """Files touched by the push, or None when the payload's list is incomplete.

    ``total_commits`` (newer versions) is the real count when ``commits`` is
    capped; commits without any added/modified/removed key (old versions, the
    documentation example) do not list their files at all.
    """
    commits = payload.get("commits")
    if payload.get("before") == ZERO_SHA or not isinstance(commits, list) or not commits:
        return None
    total = payload.get("total_commits")
    if total is not None and total != len(commits):
        return None
    return touched_files(commits)
