"""GitHub's webhook payload shapes, which Gitea and Forgejo copy: a push, and a pull request.

The host modules (``github.py``, ``gitea.py``) decide what differs: which headers name the event,
when a push is a deletion, which commit is the head, who the author is, whether the commit list
is complete. What they read the same way is here.
"""

from __future__ import annotations

from typing import Any

from builder.forges.pull_requests import ignored_action, request_event, request_number
from builder.forges.request import clean_text, dig, previous_commit
from builder.intake.events import PushEvent, RefType


def push(provider: str, payload: dict[str, Any], ref: tuple[str, RefType, str], commit: str,
         head: dict[str, Any], author: str | None, changed_files: tuple[str, ...] | None) -> tuple[PushEvent]:
    """The push's one event: the repository's ``full_name``, the head commit's ``message`` and
    the payload's ``before`` (the commit the push sits on), beside what the host module read."""
    full_ref, ref_type, ref_name = ref
    return (
        PushEvent(
            provider=provider,
            repository=clean_text(dig(payload, "repository", "full_name")) or "",
            ref=full_ref,
            ref_type=ref_type,
            ref_name=ref_name,
            commit=commit,
            author=author,
            message=clean_text(head.get("message")),
            changed_files=changed_files,
            before=previous_commit(payload.get("before")),
        ),
    )


def pull_request(provider: str, payload: dict[str, Any], actions: tuple[str, ...]) -> tuple[PushEvent]:
    """A GitHub or Gitea ``pull_request`` payload (the same shape): ``number``, ``action``,
    ``pull_request.head``/``base`` with ``sha``, ``ref`` and ``repo.full_name``; ``before`` on an update."""
    action, number = payload.get("action"), payload.get("number")
    request = payload.get("pull_request") if isinstance(payload.get("pull_request"), dict) else {}
    if action not in actions:
        if action == "closed" and request.get("merged"):
            action = "closed (merged)"
        raise ignored_action(number, action, actions)
    number = request_number(number)
    head_repository = dig(request, "head", "repo", "full_name")
    base_repository = dig(request, "base", "repo", "full_name") or dig(payload, "repository", "full_name")
    return request_event(
        provider=provider,
        repository=dig(payload, "repository", "full_name"),
        number=number,
        request_ref=f"refs/pull/{number}/head",
        head_branch=dig(request, "head", "ref"),
        base_branch=dig(request, "base", "ref"),
        commit=dig(request, "head", "sha"),
        # a deleted fork has no head repository: a fork all the same
        from_fork=not head_repository or head_repository != base_repository,
        before=payload.get("before") if action != actions[0] else None,
        author=dig(request, "user", "login") or dig(payload, "sender", "login"),
        message=request.get("title"),
    )
