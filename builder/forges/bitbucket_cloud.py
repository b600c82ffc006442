"""Bitbucket Cloud (bitbucket.org): push changes, pull requests and commit statuses.

Event keys ``repo:push`` and ``pullrequest:*``; the API is api.bitbucket.org/2.0.
``builder.forges.bitbucket`` decides which Bitbucket a delivery or trigger is.
"""

from __future__ import annotations

import re
from typing import Any

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
PUSH = "repo:push"
PULL_REQUEST = "pullrequest:"
PULL_REQUEST_BUILT = ("pullrequest:created", "pullrequest:updated")
REF_PREFIXES = {"branch": "refs/heads/", "tag": "refs/tags/"}
STATUS_WORDS = {"pending": "INPROGRESS", "running": "INPROGRESS", "success": "SUCCESSFUL",
                "failure": "FAILED", "cancelled": "STOPPED"}
# "Jane Doe <jane@example.com>" -> "Jane Doe"
_EMAIL_SUFFIX = re.compile(r"\s*<[^<>]*>\s*$")


def push_changes(payload: dict[str, Any]) -> Any:
    return dig(payload, "push", "changes")


def push_change(change: dict[str, Any], repository: str, payload: dict[str, Any]) -> PushEvent | str | None:
    """A PushEvent, a description of a deleted ref, or None for anything else."""
    new = change.get("new")
    if new is None:
        old = change.get("old")
        if isinstance(old, dict) and _ref_type(old):
            return f"{old['type']} {shown(old.get('name'))}"
        return "a ref"
    ref_type = _ref_type(new)
    if ref_type is None:
        return None
    name, commit = new.get("name"), commit_id(dig(new, "target", "hash"))
    if not isinstance(name, str) or commit is None or commit == ZERO_SHA:
        return None
    try:
        ref, ref_type, name = read_ref(REF_PREFIXES[ref_type] + name)
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
        author=_author(target, payload),
        message=clean_text(target.get("message")),
        before=previous_commit(dig(change, "old", "target", "hash")),
    )


def _ref_type(ref: dict[str, Any]) -> str | None:
    """``branch`` or ``tag`` when a Cloud ``new``/``old`` names one, else None."""
    kind = ref.get("type") if isinstance(ref, dict) else None
    return kind if isinstance(kind, str) and kind in REF_PREFIXES else None


def pull_request(event: str, payload: dict[str, Any], repository: str | None) -> tuple[PushEvent, ...]:
    request = payload.get("pullrequest") if isinstance(payload.get("pullrequest"), dict) else {}
    if event not in PULL_REQUEST_BUILT:
        raise ignored_action(request.get("id"), event, PULL_REQUEST_BUILT)
    number = request_number(request.get("id"))
    source = dig(request, "source", "repository", "full_name")
    if not source or source != dig(request, "destination", "repository", "full_name"):
        raise Ignored(f"pull request #{number} comes from the fork {shown(source)}: Bitbucket Cloud has no "
                      "pull request refs, so its head cannot be fetched from the base repository")
    branch = dig(request, "source", "branch", "name")
    return request_event(
        provider=NAME,
        repository=repository,
        number=number,
        # Cloud keeps no request refs: a same-repository request's head is its source branch.
        request_ref=f"refs/heads/{branch}",
        head_branch=branch,
        base_branch=dig(request, "destination", "branch", "name"),
        commit=dig(request, "source", "commit", "hash"),
        from_fork=False,
        author=dig(request, "author", "display_name") or dig(payload, "actor", "display_name"),
        message=request.get("title"),
        abbreviated=True,  # Cloud sends the first 12 hex digits
    )


def _author(target: dict[str, Any], payload: dict[str, Any]) -> str | None:
    name = dig(target, "author", "user", "display_name")
    if not name:
        raw = dig(target, "author", "raw")
        name = _EMAIL_SUFFIX.sub("", raw) if isinstance(raw, str) else None
    if not name:
        name = dig(payload, "actor", "display_name")
    return clean_text(name, 255) or None


def send_status(target: StatusTarget, status: CommitStatus, state: str, timeout: float) -> None:
    workspace, slug = split_repository(target, parts=2)
    url = (f"{target.api_url.rstrip('/')}/repositories/{quoted(workspace)}/{quoted(slug)}"
           f"/commit/{quoted(status.sha)}/statuses/build")
    post_status(target, url, f"Bearer {target.token}", status_body(status, state), timeout)


def status_body(status: CommitStatus, state: str) -> dict[str, str]:
    """Both Bitbucket's status body. The key identifies the status on the commit: a later post with
    the same key replaces it."""
    return {"state": state, "key": status.context, "name": status.context,
            "url": status.target_url, "description": status.description}
