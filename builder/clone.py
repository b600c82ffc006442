"""Fetch exactly one commit of a repository with GitPython.

A shallow fetch of the commit itself (``git fetch --depth 1 origin <sha>``),
which GitHub, GitLab, Bitbucket and git's own protocol v2 servers allow. When a
server refuses to hand out a commit by id, the ref is fetched instead and the
commit must be on it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

from git import GitCommandError, Repo

from builder.errors import PermanentError, TransientError

_SHA = re.compile(r"[0-9a-f]{7,64}")
_UNREACHABLE = ("could not read from remote", "unable to access", "connection refused",
                "could not resolve host", "timed out", "does not appear to be a git repository")


def redact_url(url: str) -> str:
    """The URL without any user or password, for logs."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def clone_commit(
    clone_url: str, commit: str, ref: str, dest: Path, log: Callable[[str], None]
) -> Path:
    """Check out ``commit`` of ``clone_url`` into ``dest`` (created), history depth 1."""
    if not _SHA.fullmatch(commit):
        raise PermanentError(f"{commit!r} is not a commit id")
    dest.mkdir(parents=True, exist_ok=True)
    repo = Repo.init(dest)
    repo.create_remote("origin", clone_url)
    log(f"Fetching {commit} from {redact_url(clone_url)}")
    env = {"GIT_TERMINAL_PROMPT": "0"}
    try:
        with repo.git.custom_environment(**env):
            try:
                repo.git.fetch("--depth=1", "--no-tags", "origin", commit)
            except GitCommandError as by_sha:
                if _unreachable(by_sha):
                    raise
                log(f"The server does not serve commits by id; fetching {ref} instead")
                repo.git.fetch("--no-tags", "origin", f"+{ref}:refs/remotes/origin/build")
            repo.git.checkout("--detach", "--quiet", commit)
    except GitCommandError as exc:
        message = _stderr(exc, clone_url)
        if _unreachable(exc):
            raise TransientError(f"git remote unreachable: {message}") from None
        raise PermanentError(f"git could not fetch commit {commit}: {message}") from None
    head = repo.head.commit
    log(f"Checked out {head.hexsha}: {head.summary}")
    return dest


def _stderr(exc: GitCommandError, clone_url: str) -> str:
    text = str(exc.stderr or exc).strip().replace(clone_url, redact_url(clone_url))
    return " ".join(text.split())[:500]


def _unreachable(exc: GitCommandError) -> bool:
    text = str(exc.stderr or "").lower()
    return any(marker in text for marker in _UNREACHABLE)
