"""GitHub (and GitHub Enterprise Server) webhooks.

Headers: ``X-GitHub-Event``, ``X-GitHub-Delivery``, ``X-GitHub-Hook-ID`` and
``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``.
"""

from __future__ import annotations

from typing import Any, Mapping

from builder.forges.base import Forge
from builder.intake.events import ZERO_SHA, Ignored, PushEvent
from builder.forges.pull_requests import github_shaped
from builder.forges.request import (
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
    touched_files,
)

NAME = "github"
# GitHub lists at most 20 commits in a push payload.
MAX_LISTED_COMMITS = 20
# pull_request actions that build the request's head (closed, labeled, edited... are recorded, not built).
PULL_REQUEST_ACTIONS = ("opened", "synchronize", "reopened")


def describe(headers: Mapping[str, str], body: bytes) -> HookInfo:
    payload = load_json(body)
    delivery = header(headers, "X-GitHub-Delivery")
    hook_id = header(headers, "X-GitHub-Hook-ID") or ""
    repository = dig(payload, "repository", "full_name")
    return HookInfo(
        event=header(headers, "X-GitHub-Event"),
        delivery_id=delivery,
        repository=repository if isinstance(repository, str) else None,
        dedupe_key=f"{NAME}:{hook_id}:{delivery}" if delivery else None,
    )


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> None:
    require_hmac_sha256(body, secret, header(headers, "X-Hub-Signature-256"), prefix="sha256=")


def parse(headers: Mapping[str, str], body: bytes) -> tuple[PushEvent, ...]:
    event = header(headers, "X-GitHub-Event")
    if event == "ping":
        raise Ignored("ping", status=200)
    if event == "pull_request":
        return _pull_request(load_json(body))
    if event != "push":
        raise Ignored(f"event {event!r} is recorded but not built")
    payload = load_json(body)
    ref, ref_type, ref_name = read_ref(payload.get("ref"))
    if payload.get("deleted"):
        raise Ignored(f"{ref_type} {shown(ref_name)} was deleted")
    head = payload.get("head_commit") if isinstance(payload.get("head_commit"), dict) else {}
    sent = head.get("id") or payload.get("after")
    commit = commit_id(sent)
    if commit == ZERO_SHA:
        raise Ignored(f"{ref_type} {shown(ref_name)} was deleted")
    if commit is None:
        raise Ignored("push without a head commit" if not sent else f"head commit {shown(sent)} is not a commit id")
    return (
        PushEvent(
            provider=NAME,
            repository=clean_text(dig(payload, "repository", "full_name")) or "",
            ref=ref,
            ref_type=ref_type,
            ref_name=ref_name,
            commit=commit,
            author=_author(head, payload),
            message=clean_text(head.get("message")),
            changed_files=_changed_files(payload),
            before=previous_commit(payload.get("before")),
        ),
    )


def _pull_request(payload: dict[str, Any]) -> tuple[PushEvent, ...]:
    return github_shaped(NAME, payload, PULL_REQUEST_ACTIONS)


def _author(head: dict[str, Any], payload: dict[str, Any]) -> str | None:
    name = dig(head, "author", "username") or dig(head, "author", "name")
    if not name:
        name = dig(payload, "pusher", "name") or dig(payload, "sender", "login")
    return clean_text(name, 255)


def _changed_files(payload: dict[str, Any]) -> tuple[str, ...] | None:
    """Files touched by the push, or None when the payload's list is incomplete."""
    commits = payload.get("commits")
    if payload.get("created") or not isinstance(commits, list) or not commits:
        return None
    if len(commits) >= MAX_LISTED_COMMITS:
        return None
    return touched_files(commits)


class GitHubForge(Forge):
    name = NAME
    display_name = "GitHub"
    signature_header = "X-Hub-Signature-256 (GitHub)"
    default_api_url = "https://api.github.com"
    secret_headers = ("X-Hub-Signature-256",)
    setup_steps = (
        "Open the repository on GitHub: Settings → Webhooks → Add webhook.",
        "Payload URL: the webhook URL below.",
        "Content type: application/json.",
        "Secret: the secret below.",
        "Which events: “Just the push event”. Keep “Active” checked, then Add webhook.",
        "GitHub sends a ping at once: it appears under Recent deliveries on this trigger's page.",
    )
    describe = staticmethod(describe)
    verify = staticmethod(verify)
    parse = staticmethod(parse)
