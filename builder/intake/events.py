"""The provider-neutral push event every Git host's payload is parsed into."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

RefType = Literal["branch", "tag", "pull_request"]

ZERO_SHA = "0" * 40


@dataclass(frozen=True)
class PushEvent:
    """One ref that moved to a commit worth building."""

    provider: str
    repository: str
    ref: str
    ref_type: RefType
    ref_name: str
    commit: str
    author: str | None = None
    message: str | None = None
    # None when the payload does not list the changed files completely.
    changed_files: tuple[str, ...] | None = None
    # The commit the ref pointed at before the push; None for a new ref.
    before: str | None = field(default=None, compare=False)
    # A pull or merge request (ref_type "pull_request"): its number, the base (target) branch, and
    # whether its head comes from a fork. ``ref`` is then the base repository's request ref
    # (``refs/pull/N/head``...), which the worker fetches, and ``ref_name`` the head branch.
    pull_request: int | None = None
    base_branch: str | None = None
    from_fork: bool = False

    @property
    def short_sha(self) -> str:
        return self.commit[:7]


class Ignored(Exception):
    """A delivery that is valid but builds nothing; the reason is recorded."""

    def __init__(self, reason: str, status: int = 202) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def split_ref(ref: str) -> tuple[RefType, str]:
    """``refs/heads/x`` -> ("branch", "x"); ``refs/tags/v1`` -> ("tag", "v1")."""
    if ref.startswith("refs/heads/"):
        return "branch", ref.removeprefix("refs/heads/")
    if ref.startswith("refs/tags/"):
        return "tag", ref.removeprefix("refs/tags/")
    raise Ignored(f"ref {ref!r} is neither a branch nor a tag")
