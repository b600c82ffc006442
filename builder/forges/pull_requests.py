"""Pull and merge requests, read into ``PushEvent``s of ref type ``pull_request``.

Each host module finds the fields in its own payload and hands them to ``request_event``,
which checks them the way pushes are checked (a branch name git accepts, a commit id) and
names the ref the worker fetches: the base repository's request ref (``refs/pull/N/head``,
``refs/merge-requests/N/head``, ``refs/pull-requests/N/from``), so a fork's head needs no
access to the fork.
"""

from __future__ import annotations

import re
from typing import Any

from builder.intake.events import Ignored, PushEvent
from builder.forges.request import clean_text, commit_id, previous_commit, read_ref, shown

# Bitbucket Cloud names commits by their first 12 hex digits in pull request payloads.
_ABBREVIATED = re.compile(r"[0-9a-f]{7,39}")
MAX_NUMBER = 2**31 - 1


def request_number(value: Any) -> int:
    """The request's number (GitHub's number, GitLab's iid, Bitbucket's id); ``Ignored`` if it is none."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_NUMBER:
        raise Ignored(f"pull request number {shown(value)} is not a number")
    return value


def ignored_action(number: Any, action: Any, built: tuple[str, ...]) -> Ignored:
    """Why a request event that is not built was recorded and ignored."""
    what = f"pull request #{number}" if isinstance(number, int) and not isinstance(number, bool) else "pull request"
    happened = shown(action) if action is not None else "event without an action"
    return Ignored(f"{what} {happened}: recorded, not built (built: {', '.join(built)})")


def request_event(
    *,
    provider: str,
    repository: Any,
    number: int,
    request_ref: str,
    head_branch: Any,
    base_branch: Any,
    commit: Any,
    from_fork: bool,
    before: Any = None,
    author: Any = None,
    message: Any = None,
    abbreviated: bool = False,
) -> tuple[PushEvent]:
    """The request's head as one event; ``abbreviated`` accepts a commit id of 7 to 39 hex digits
    (the worker resolves it once it has fetched the ref)."""
    base = _branch(base_branch, "base")
    head = _branch(head_branch, "head")
    sha = commit_id(commit)
    if sha is None and abbreviated and isinstance(commit, str) and _ABBREVIATED.fullmatch(commit.lower()):
        sha = commit.lower()
    if sha is None or set(sha) == {"0"}:
        raise Ignored(f"pull request #{number}: head commit {shown(commit)} is not a commit id")
    return (
        PushEvent(
            provider=provider,
            repository=clean_text(repository) or "",
            ref=request_ref,
            ref_type="pull_request",
            ref_name=head,
            commit=sha,
            author=clean_text(author, 255),
            message=clean_text(message),
            before=previous_commit(before),
            pull_request=number,
            base_branch=base,
            from_fork=from_fork,
        ),
    )


def _branch(value: Any, which: str) -> str:
    if not isinstance(value, str):
        raise Ignored(f"pull request without a {which} branch")
    name = value.removeprefix("refs/heads/")
    try:
        return read_ref(f"refs/heads/{name}")[2]
    except Ignored:
        raise Ignored(f"pull request {which} branch {shown(value)} is not a valid git ref name") from None
