"""Gitea and Forgejo webhooks.

Each delivery names its event in several header families at once
(``X-Gitea-Event``, ``X-Forgejo-Event``, ``X-Gogs-Event``, ``X-GitHub-Event``),
each with a matching ``*-Delivery`` GUID. ``X-Gitea-Signature`` (or
``X-Forgejo-Signature``) is the hex HMAC-SHA256 of the raw body, no prefix.
"""

from __future__ import annotations

from typing import Any, Mapping

from builder.forges.base import Forge
from builder.intake.events import ZERO_SHA, Ignored, PushEvent
from builder.forges import github_shaped
from builder.forges.status_http import CommitStatus, StatusTarget, post_status, quoted, split_repository
from builder.forges.request import (
    HookInfo,
    clean_text,
    commit_id,
    dig,
    header,
    load_json,
    read_ref,
    require_hmac_sha256,
    shown,
    touched_files,
)

NAME = "gitea"
EVENT_HEADERS = ("X-Gitea-Event", "X-Forgejo-Event", "X-Gogs-Event", "X-GitHub-Event")
DELIVERY_HEADERS = ("X-Gitea-Delivery", "X-Forgejo-Delivery", "X-Gogs-Delivery", "X-GitHub-Delivery")
SIGNATURE_HEADERS = ("X-Gitea-Signature", "X-Forgejo-Signature")
# Branch/tag creation and deletion also arrive as push events, which are built.
REF_EVENTS = ("create", "delete")
# Pull request events (newer versions name a new head ``pull_request_sync``) and the actions built.
PULL_REQUEST_EVENTS = ("pull_request", "pull_request_sync")
PULL_REQUEST_ACTIONS = ("opened", "synchronized", "reopened")


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
        ref_type = payload.get("ref_type") if payload.get("ref_type") in ("branch", "tag") else "ref"
        raise Ignored(f"{event} of {ref_type} {shown(payload.get('ref'))} is recorded, not built "
                      "(the push event covers it)")
    if event in PULL_REQUEST_EVENTS:
        return _pull_request(load_json(body))
    if event != "push":
        raise Ignored(f"event {shown(event)} is recorded but not built")
    payload = load_json(body)
    ref, ref_type, ref_name = read_ref(payload.get("ref"))
    sent = payload.get("after")
    if sent == ZERO_SHA:
        raise Ignored(f"{ref_type} {shown(ref_name)} was deleted")
    commit = commit_id(sent)
    if commit is None or commit == ZERO_SHA:
        raise Ignored("push without a head commit" if not sent else f"head commit {shown(sent)} is not a commit id")
    head = _head_commit(payload, commit)
    return github_shaped.push(NAME, payload, (ref, ref_type, ref_name), commit, head, _author(head, payload),
                              _changed_files(payload))


def _pull_request(payload: dict[str, Any]) -> tuple[PushEvent, ...]:
    return github_shaped.pull_request(NAME, payload, PULL_REQUEST_ACTIONS)


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
    listed = payload.get("commits")
    commits = [item for item in listed if isinstance(item, dict)] if isinstance(listed, list) else []
    for item in commits:
        if commit_id(item.get("id")) == commit:
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
    return clean_text(name, 255)


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


class GiteaForge(Forge):
    name = NAME
    display_name = "Gitea / Forgejo"
    signature_header = "X-Gitea-Signature / X-Forgejo-Signature (Gitea, Forgejo)"
    secret_headers = ("X-Gitea-Signature", "X-Forgejo-Signature", "X-Gogs-Signature")
    # No "cancelled": "error" is non-green but tells it apart from a failed build.
    status_words = {"pending": "pending", "running": "pending", "success": "success",
                    "failure": "failure", "cancelled": "error"}
    default_api_url = None  # derived from the clone URL's host
    setup_steps = (
        "Open the repository on Gitea or Forgejo: Settings → Webhooks → Add webhook → Gitea (or Forgejo).",
        "Target URL: the webhook URL below. HTTP method POST, content type application/json.",
        "Secret: the secret below.",
        "Trigger on: “Push events”. Keep “Active” checked, then Add webhook.",
    )
    describe = staticmethod(describe)
    verify = staticmethod(verify)
    parse = staticmethod(parse)

    def send_status(self, target: StatusTarget, status: CommitStatus, state: str, timeout: float) -> None:
        owner, name = split_repository(target, parts=2)
        url = f"{target.api_url.rstrip('/')}/repos/{quoted(owner)}/{quoted(name)}/statuses/{quoted(status.sha)}"
        body = {"state": state, "target_url": status.target_url,
                "description": status.description, "context": status.context}
        post_status(target, url, f"token {target.token}", body, timeout)
