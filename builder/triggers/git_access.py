"""How buildhook hands a repository's credentials to git: the environment of one git command.

No git code runs here, so the web app (manual runs resolve refs with ``git ls-remote``) and the
worker's clone share it without the web importing GitPython.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import quote, urlsplit, urlunsplit

from builder.errors import PermanentError
from builder.forges.base import CLONE_USERNAME
from builder.triggers.clone_urls import GIT_ALLOW_PROTOCOL

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


def check_auth(auth: GitAuth | None) -> None:
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
