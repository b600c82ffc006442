"""Bitbucket Data Center (Server): push changes, pull requests and commit statuses.

Event keys ``repo:refs_changed`` and ``pr:*``; the API is on the server's own host.
``builder.forges.bitbucket`` decides which Bitbucket a delivery or trigger is.
"""

from __future__ import annotations

from typing import Any

from builder.forges.bitbucket_cloud import STATUS_WORDS as CLOUD_STATUS_WORDS
from builder.forges.bitbucket_cloud import status_body
from builder.forges.pull_requests import ignored_action, request_event, request_number
from builder.forges.request import (
    clean_text,
    commit_id,
    dig,
    previous_commit,
    read_ref,
    shown,
)
from builder.forges.status_http import CommitStatus, StatusTarget, post_status, quoted, split_repository
from builder.intake.events import ZERO_SHA, Ignored, PushEvent

NAME = "bitbucket"
STATUS_KEY = "bitbucket-server"
PUSH = "repo:refs_changed"
PULL_REQUEST = "pr:"
PULL_REQUEST_BUILT = ("pr:opened", "pr:from_ref_updated")
BUILT_CHANGES = ("ADD", "UPDATE")
# The build-status 1.0 resource takes only INPROGRESS, SUCCESSFUL and FAILED (STOPPED is Cloud's).
STATUS_WORDS = {**CLOUD_STATUS_WORDS, "cancelled": "FAILED"}


def push_changes(payload: dict[str, Any]) -> Any:
    return payload.get("changes")


def push_change(change: dict[str, Any], repository: str, payload: dict[str, Any]) -> PushEvent | str | None:
    try:
        ref, ref_type, ref_name = read_ref(dig(change, "ref", "id") or change.get("refId"))
    except Ignored:
        return None
    kind = change.get("type")
    if kind == "DELETE":
        return f"{ref_type} {shown(ref_name)}"
    commit = commit_id(change.get("toHash"))
    if kind not in BUILT_CHANGES or commit is None or commit == ZERO_SHA:
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


def pull_request(event: str, payload: dict[str, Any], repository: str | None) -> tuple[PushEvent, ...]:
    request = payload.get("pullRequest") if isinstance(payload.get("pullRequest"), dict) else {}
    if event not in PULL_REQUEST_BUILT:
        raise ignored_action(request.get("id"), event, PULL_REQUEST_BUILT)
    number = request_number(request.get("id"))
    head, base = request.get("fromRef") or {}, request.get("toRef") or {}
    return request_event(
        provider=NAME,
        repository=repository,
        number=number,
        request_ref=f"refs/pull-requests/{number}/from",
        head_branch=dig(head, "displayId") or dig(head, "id"),
        base_branch=dig(base, "displayId") or dig(base, "id"),
        commit=dig(head, "latestCommit"),
        from_fork=repository_key(dig(head, "repository")) != repository_key(dig(base, "repository")),
        before=payload.get("previousFromHash"),
        author=dig(payload, "actor", "displayName") or dig(request, "author", "user", "displayName"),
        message=request.get("title"),
    )


def repository_key(repository: Any) -> str | None:
    """``PROJECTKEY/slug`` of a Data Center repository object."""
    key, slug = dig(repository, "project", "key"), dig(repository, "slug")
    if isinstance(key, str) and key and isinstance(slug, str) and slug:
        return f"{key}/{slug}"
    return None


def send_status(target: StatusTarget, status: CommitStatus, state: str, timeout: float) -> None:
    split_repository(target, parts=2)  # PROJECT/slug: checked, though this resource keys on the commit alone
    url = f"{target.api_url.rstrip('/')}/rest/build-status/1.0/commits/{quoted(status.sha)}"
    post_status(target, url, f"Bearer {target.token}", status_body(status, state), timeout)
