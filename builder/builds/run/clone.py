"""Fetch exactly one commit of a repository with GitPython.

A shallow fetch of the commit itself (``git fetch --depth 1 origin <sha>``),
which GitHub, GitLab, Bitbucket and git's own protocol v2 servers allow. When a
server refuses to hand out a commit by id, the ref is fetched instead and the
commit must be on it.

Private repositories take a :class:`GitAuth`: an HTTPS access token, an SSH
deploy key, or both (each only applies to its own transport).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlsplit

from git import GitCommandError, Repo

from builder.triggers.git_access import GitAuth, check_auth, git_environment, redact_url  # noqa: F401 (re-exported)
from builder.errors import PermanentError, TransientError

_SHA = re.compile(r"[0-9a-f]{7,64}")
_UNREACHABLE = ("could not read from remote", "unable to access", "connection refused",
                "could not resolve host", "timed out", "does not appear to be a git repository",
                "failed to connect", "couldn't connect to server", "connection reset", "no route to host",
                "network is unreachable", "unable to connect", "early eof")
_HOST_KEY = ("host key verification failed",)
_AUTH = ("authentication failed", "could not read username", "could not read password",
         "returned error: 401", "returned error: 403", "permission denied (publickey",
         "permission denied, please try again", "http basic: access denied")

def clone_commit(
    clone_url: str, commit: str, ref: str, dest: Path, log: Callable[[str], None],
    auth: GitAuth | None = None, before: str | None = None,
) -> Path:
    """Check out ``commit`` of ``clone_url`` into ``dest`` (created), history depth 1.

    With ``before`` (the commit the ref pointed at before the push), that commit is
    fetched too, at depth 1, so ``changed_files`` can compare the two trees.
    """
    if not _SHA.fullmatch(commit):
        raise PermanentError(f"{commit!r} is not a commit id")
    check_auth(auth)
    dest.mkdir(parents=True, exist_ok=True)
    repo = Repo.init(dest)
    with repo.config_writer() as config:  # what `git remote add origin URL` writes, without a process
        config.set_value('remote "origin"', "url", clone_url)
        # Keep the fetched pack as it comes, as `git clone` does: below 100 objects git would
        # unpack it and compress every object again (50 ms for a 2 MB file). And this repository
        # is thrown away after the build: no maintenance after the fetch.
        config.set_value("fetch", "unpackLimit", 1)
        config.set_value("maintenance", "auto", False)
        config.set_value("gc", "auto", 0)
    log(f"Fetching {commit} from {redact_url(clone_url)}")
    secrets = sorted(_url_secrets(clone_url) + (auth.secrets() if auth else []), key=len, reverse=True)
    try:
        with git_environment(clone_url, auth, log) as env, repo.git.custom_environment(**env):
            try:
                repo.git.fetch("--depth=1", "--no-tags", "origin", commit)
            except GitCommandError as by_sha:
                if _kind(by_sha) != "other":
                    raise
                log(f"The server does not serve commits by id; fetching {ref} instead")
                repo.git.fetch("--no-tags", "origin", f"+{ref}:refs/remotes/origin/build")
            repo.git.checkout("--detach", "--quiet", commit)
            if before and _SHA.fullmatch(before):
                try:
                    repo.git.fetch("--depth=1", "--no-tags", "origin", before)
                except GitCommandError:
                    log(f"The previous commit {before} could not be fetched; changed files unknown")
    except GitCommandError as exc:
        message = _stderr(exc, clone_url, secrets)
        where = redact_url(clone_url)
        kind = _kind(exc)
        if kind == "host key":
            raise PermanentError(_host_key_message(exc, where, auth)) from None
        if kind == "auth":
            raise PermanentError(f"git authentication failed for {where}: {message}") from None
        if kind == "unreachable":
            raise TransientError(f"git remote unreachable: {where}: {message}") from None
        raise PermanentError(f"git could not fetch commit {commit}: {message}") from None
    head = repo.head.commit
    log(f"Checked out {head.hexsha}: {head.summary}")
    return dest


def commit_time(checkout: Path) -> datetime:
    """When the checked-out commit was committed (UTC): the image's ``created``, so a rebuild of the
    same commit gives the same labels (and, from a warm cache, the same digest)."""
    return Repo(checkout).head.commit.committed_datetime.astimezone(timezone.utc)


def changed_files(checkout: Path, before: str, commit: str) -> list[str] | None:
    """Paths that differ between two fetched commits, or None if ``before`` is not there."""
    repo = Repo(checkout)
    try:
        output = repo.git.diff("--name-only", "--no-renames", "-z", before, commit)
    except GitCommandError:
        return None
    return [path for path in output.split("\0") if path]


def _url_secrets(clone_url: str) -> list[str]:
    password = urlsplit(clone_url).password
    return [password, unquote(password)] if password else []


def _stderr(exc: GitCommandError, clone_url: str, secrets: list[str]) -> str:
    text = str(exc.stderr or exc).strip().replace(clone_url, redact_url(clone_url))
    wrapped = re.fullmatch(r"stderr: '(.*)'", text, flags=re.DOTALL)  # how GitPython shows git's stderr
    if wrapped:
        text = wrapped[1]
    text = " ".join(_scrub(text, secrets).split())
    return _scrub(text, secrets)[:500]


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _host_key_message(exc: GitCommandError, where: str, auth: GitAuth | None) -> str:
    """Short: ssh's changed-key banner would fill the message and hide the fingerprint."""
    source = "the known_hosts given" if auth and auth.ssh_known_hosts else "known_hosts"
    text = " ".join(str(exc.stderr or "").split())
    sent = re.search(r"(\w+) key sent by the remote host is (SHA256:[A-Za-z0-9+/=]+)", text)
    unknown = re.search(r"No (\w+) host key is known for (\S+)", text)
    if sent:
        detail = f"its {sent[1]} key {sent[2]} does not match the one in {source}"
    elif unknown:
        detail = f"no {unknown[1]} host key for {unknown[2]} in {source}"
    else:
        detail = f"the server's host key is not in {source}"
    return f"SSH host key verification failed for {where}: {detail} (host keys are checked strictly)"


def _kind(exc: GitCommandError) -> str:
    text = str(exc.stderr or "").lower()
    if any(marker in text for marker in _HOST_KEY):
        return "host key"
    if any(marker in text for marker in _AUTH):
        return "auth"
    if any(marker in text for marker in _UNREACHABLE):
        return "unreachable"
    return "other"
