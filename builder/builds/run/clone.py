"""Fetch exactly one commit of a repository with GitPython.

A shallow fetch of the commit itself (``git fetch --depth 1 origin <sha>``),
which GitHub, GitLab, Bitbucket and git's own protocol v2 servers allow. When a
server refuses to hand out a commit by id, the ref is fetched instead and the
commit must be on it.

Private repositories take a :class:`GitAuth`: an HTTPS access token, an SSH
deploy key, or both (each only applies to its own transport).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from git import GitCommandError, Repo

from builder.triggers.clone_urls import GIT_ALLOW_PROTOCOL
from builder.errors import PermanentError, TransientError
from builder.forges.base import CLONE_USERNAME

_SHA = re.compile(r"[0-9a-f]{7,64}")
_UNREACHABLE = ("could not read from remote", "unable to access", "connection refused",
                "could not resolve host", "timed out", "does not appear to be a git repository",
                "failed to connect", "couldn't connect to server", "connection reset", "no route to host",
                "network is unreachable", "unable to connect", "early eof")
_HOST_KEY = ("host key verification failed",)
_AUTH = ("authentication failed", "could not read username", "could not read password",
         "returned error: 401", "returned error: 403", "permission denied (publickey",
         "permission denied, please try again", "http basic: access denied")

# A git credential helper given inline through the environment (see GitAuth). It only answers
# ``get`` (``store``/``erase`` are ignored, so nothing is persisted) and only for the host of
# the clone URL (a redirect to another host gets no token).
_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || return 0; h=; '
    'while IFS= read -r l; do case "$l" in host=*) h="${l#host=}";; esac; done; '
    'test "$h" = "$BUILDHOOK_GIT_HOST" || return 0; '
    "printf 'username=%s\\npassword=%s\\n' \"$BUILDHOOK_GIT_USERNAME\" \"$BUILDHOOK_GIT_TOKEN\"; }; f"
)


@dataclass(frozen=True)
class GitAuth:
    """Credentials for a private repository.

    HTTPS token: handed to git by a credential helper configured only through the
    environment (``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``), an inline
    shell function that prints the user name and token from environment variables. So
    the token is never in argv (``ps``), in the remote URL or ``.git/config``, nor in a
    file; git sends it only after the server answers 401, and only to the clone URL's
    host. ``credential.helper`` is reset first, so helpers configured on the worker are
    neither asked nor told to store the token. (``http.extraHeader`` would send the
    token with every request, unasked; a ``GIT_ASKPASS`` script would need a file and
    answers for any host.)

    SSH deploy key: written with mode 0600 (``ssh_known_hosts`` beside it) into a
    private temporary directory outside the checkout for the clone only, and removed
    afterwards, also on failure. ssh runs with ``IdentitiesOnly=yes``,
    ``StrictHostKeyChecking=yes`` and ``BatchMode=yes``: an unknown host key fails.
    Without ``ssh_known_hosts`` the usual known_hosts files are checked, strictly.
    """

    token: str | None = field(default=None, repr=False)
    username: str = CLONE_USERNAME
    ssh_private_key: str | None = field(default=None, repr=False)
    ssh_known_hosts: str | None = None

    def secrets(self) -> list[str]:
        """Every string that must never be shown: the token and the key's lines."""
        found = []
        if self.token:
            found += [self.token, quote(self.token, safe="")]
        for line in (self.ssh_private_key or "").splitlines():
            if len(line.strip()) >= 8:
                found.append(line.strip())
        return found


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
    clone_url: str, commit: str, ref: str, dest: Path, log: Callable[[str], None],
    auth: GitAuth | None = None, before: str | None = None,
) -> Path:
    """Check out ``commit`` of ``clone_url`` into ``dest`` (created), history depth 1.

    With ``before`` (the commit the ref pointed at before the push), that commit is
    fetched too, at depth 1, so ``changed_files`` can compare the two trees.
    """
    if not _SHA.fullmatch(commit):
        raise PermanentError(f"{commit!r} is not a commit id")
    _check(auth)
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


def _check(auth: GitAuth | None) -> None:
    if auth is None:
        return
    for name, value in (("token", auth.token), ("username", auth.username)):
        if value and any(char in value for char in "\r\n\0"):
            raise PermanentError(f"the git {name} contains a line break or NUL")
    if auth.ssh_private_key and "PRIVATE KEY" not in auth.ssh_private_key:
        raise PermanentError("the SSH deploy key is not an OpenSSH/PEM private key")


@contextmanager
def git_environment(clone_url: str, auth: GitAuth | None, log: Callable[[str], None]) -> Iterator[dict[str, str]]:
    """The environment git needs for ``auth``; removes its temporary files on leaving.

    git may only use the transports clone URLs may name (``GIT_ALLOW_PROTOCOL``): never
    ``ext::`` or ``fd::``, whatever reaches it.
    """
    env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ALLOW_PROTOCOL": GIT_ALLOW_PROTOCOL}
    if auth is None:
        yield env
        return
    config: list[tuple[str, str]] = []
    if auth.token:
        host = urlsplit(clone_url).netloc.rpartition("@")[2]
        config += [("credential.helper", ""), ("credential.helper", _CREDENTIAL_HELPER)]
        env.update(BUILDHOOK_GIT_HOST=host, BUILDHOOK_GIT_USERNAME=auth.username,
                   BUILDHOOK_GIT_TOKEN=auth.token)
        log(f"Authenticating to {host} with an access token as {auth.username!r}")
    count = os.environ.get("GIT_CONFIG_COUNT", "")
    start = int(count) if count.isdigit() else 0  # after any the worker has
    for index, (key, value) in enumerate(config, start):
        env[f"GIT_CONFIG_KEY_{index}"], env[f"GIT_CONFIG_VALUE_{index}"] = key, value
    if config:
        env["GIT_CONFIG_COUNT"] = str(start + len(config))
    if not (auth.ssh_private_key or auth.ssh_known_hosts):
        yield env
        return
    tmp = Path(tempfile.mkdtemp(prefix="buildhook-ssh-"))  # mode 0700
    try:
        command = ["ssh", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"]
        if auth.ssh_private_key:
            key = _write_private(tmp / "deploy_key", auth.ssh_private_key)
            command += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
        if auth.ssh_known_hosts:
            known = _write_private(tmp / "known_hosts", auth.ssh_known_hosts)
            command += ["-o", f"UserKnownHostsFile={known}", "-o", "GlobalKnownHostsFile=/dev/null"]
        env["GIT_SSH_COMMAND"] = shlex.join(command)
        log("Authenticating over SSH with a deploy key" if auth.ssh_private_key
            else "Checking the SSH host key against the known_hosts given")
        yield env
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_private(path: Path, text: str) -> Path:
    text = text.replace("\r\n", "\n").strip() + "\n"  # ssh refuses a key without the last newline
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    return path


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
