"""Which clone URLs buildhook hands to git.

git takes more than URLs: ``ext::<command>`` runs a command, ``fd::<n>`` talks over a file
descriptor (and waits on it forever), a name starting with ``-`` may be read as an option,
and a local path or ``file://`` URL reads any repository on the worker's disk. So a clone
URL must be one of ``https://``, ``http://``, ``ssh://`` or scp-style ``[user@]host:path``;
``file://`` URLs and local paths only when ``BUILDHOOK_ALLOW_FILE_CLONES`` is set (tests, local
use). It is checked when a trigger is created or changed, on every push and manual run, on a
rebuild and by the worker before git runs, so a trigger stored before this check cannot reach
git either. git itself is also told which transports it may use (``GIT_ALLOW_PROTOCOL``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urlsplit

from builder.errors import InputError

NETWORK_SCHEMES = ("https", "http", "ssh")
# What git may use at all (git's own names; "file" is local paths and file:// URLs).
GIT_ALLOW_PROTOCOL = "https:http:ssh:file"
ALLOWED = "https://, http://, ssh:// or scp-style user@host:path"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_TRANSPORT = re.compile(r"([A-Za-z0-9][A-Za-z0-9+.-]*|)::")  # git's <transport>::<address>, as GitPython sees it
# scp-style: a colon before any slash, as git reads it ([user@]host:path, host may be [IPv6])
_SCP = re.compile(r"(?:(?P<user>[^@/:\s]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^@/:\[\]\s]+):(?P<path>.+)")


@lru_cache(maxsize=1024)
def clone_url_problem(url: str, allow_file: bool) -> str | None:
    """Why ``url`` must not be given to git (one sentence), or None when it may."""
    shown = _shown(url)
    if not url or url != url.strip() or _CONTROL.search(url):
        return f"clone URL {shown} is empty, or has surrounding spaces or control characters"
    if url.startswith("-"):
        return f"clone URL {shown} starts with '-': git would read it as an option"
    scheme = _SCHEME.match(url)
    if scheme:
        return _url_problem(url, scheme[1].lower(), shown, allow_file)
    transport = _TRANSPORT.match(url)
    if transport:
        return (f"clone URL {shown} uses git's {transport[1]}:: transport, which is not allowed: "
                f"use {ALLOWED}")
    scp = _SCP.fullmatch(url)
    if scp:
        if any(part.startswith("-") for part in (scp["user"] or "", scp["host"], scp["path"])):
            return f"clone URL {shown} has a user, host or path starting with '-'"
        return None
    if allow_file:
        return None
    return f"clone URL {shown} is a local path: {_file_hint()}"


def check_clone_url(url: str, allow_file: bool) -> str:
    """``url`` when git may be given it; else ``InputError`` (400) saying why."""
    problem = clone_url_problem(url, allow_file)
    if problem:
        raise InputError(problem)
    return url


def _url_problem(url: str, scheme: str, shown: str, allow_file: bool) -> str | None:
    if scheme == "file":
        if not allow_file:
            return f"clone URL {shown} is a local repository: {_file_hint()}"
        return None if len(url) > len("file://") else f"clone URL {shown} names no repository"
    if scheme not in NETWORK_SCHEMES:
        return f"clone URL {shown} has the scheme {scheme}://, which is not allowed: use {ALLOWED}"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError as exc:
        return f"clone URL {shown} is not a valid URL: {exc}"
    if not host or host.startswith("-") or (parts.username or "").startswith("-"):
        return f"clone URL {shown} has no host, or a user or host starting with '-'"
    return None


def _file_hint() -> str:
    return (f"file:// URLs and local paths are allowed only with BUILDHOOK_ALLOW_FILE_CLONES=1; "
            f"otherwise use {ALLOWED}")


def _shown(url: str) -> str:
    """The URL for a message: without a password, at most 120 characters."""
    text = url
    try:
        parts = urlsplit(url)
        if parts.password:
            text = url.replace(f":{parts.password}@", ":****@", 1)
    except ValueError:
        pass
    return repr(text if len(text) <= 120 else text[:117] + "...")
