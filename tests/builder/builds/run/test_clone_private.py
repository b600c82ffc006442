"""Cloning private repositories: an HTTPS token and an SSH deploy key, against real servers.

The HTTP server is ``git http-backend`` behind a small ``http.server`` wrapper that wants
Basic auth; the SSH server is a private ``sshd`` (openssh-server). Both listen on
127.0.0.1 only and are stopped afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
from git import GitCommandError

from builder.builds.run.clone import GitAuth, _stderr, clone_commit
from builder.errors import PermanentError
from buildhook.redis_server import free_port
from tests.conftest import git
from tests.git_http_server import FORBIDDEN, TOKEN, serving

WRONG = "glpat-WrongT0kenValue-9876543210"
MAIN = "refs/heads/main"


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """Where clone_commit's temporary files go, to check they are gone afterwards."""
    path = tmp_path / "tmp"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


def assert_no_secret(secrets: list[str], *texts: str) -> None:
    for secret in secrets:
        for text in texts:
            assert secret not in text


def test_a_token_clones_exactly_the_commit(make_repo, git_http, private_tmp, tmp_path):
    repo = make_repo()
    wanted = repo.commit({"a.txt": "one"}, "one")
    repo.commit({"a.txt": "two"}, "two")
    lines: list[str] = []
    auth = GitAuth(token=TOKEN, username="oauth2")
    checkout = clone_commit(git_http.url("repo"), wanted, MAIN, tmp_path / "work", lines.append, auth=auth)

    assert git(checkout, "rev-parse", "HEAD") == wanted
    assert (checkout / "a.txt").read_text() == "one"
    assert git(checkout, "rev-list", "--count", "--all") == "1"
    assert git_http.users and set(git_http.users) == {"oauth2"}, "the GitLab user name was sent"
    assert git(checkout, "remote", "get-url", "origin") == git_http.url("repo")
    assert_no_secret([TOKEN], "\n".join(lines), (checkout / ".git" / "config").read_text(), repr(auth))
    assert list(private_tmp.iterdir()) == []


def test_the_workers_own_credential_helpers_neither_answer_nor_store_the_token(
        make_repo, git_http, private_tmp, tmp_path, monkeypatch):
    store = tmp_path / "stored-credentials"
    store.write_text(f"http://x-access-token:{WRONG}@{git_http.url('').split('/')[2]}\n")
    global_config = tmp_path / "gitconfig"
    global_config.write_text(f"[credential]\n\thelper = store --file={store}\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(global_config))
    repo = make_repo()
    wanted = repo.commit({"a": "1"})
    clone_commit(git_http.url("repo"), wanted, MAIN, tmp_path / "work", lambda _: None,
                 auth=GitAuth(token=TOKEN))
    assert WRONG not in git_http.attempts, "the stored credential was not used"
    assert TOKEN not in store.read_text(), "nor was the token stored"


@pytest.mark.parametrize("auth", [None, GitAuth(), GitAuth(token=WRONG), GitAuth(token=FORBIDDEN)],
                         ids=["no-auth", "no-token", "wrong-token", "forbidden-token"])
def test_a_missing_or_wrong_token_is_a_permanent_authentication_error(
        make_repo, git_http, private_tmp, tmp_path, auth):
    repo = make_repo()
    lines: list[str] = []
    with pytest.raises(PermanentError, match="authentication failed") as caught:
        clone_commit(git_http.url("repo"), repo.commit({"a": "1"}), MAIN, tmp_path / "work",
                     lines.append, auth=auth)

    assert git_http.attempts and not git_http.users
    assert not any("does not serve commits by id" in line for line in lines), "no second try"
    assert_no_secret([TOKEN, WRONG, FORBIDDEN], str(caught.value), "\n".join(lines),
                     (tmp_path / "work" / ".git" / "config").read_text())
    assert list(private_tmp.iterdir()) == []


def test_the_token_is_not_given_to_a_host_the_server_redirects_to(make_repo, git_http, tmp_path):
    repo = make_repo()
    with serving(tmp_path) as front:  # another port: another host for git's credentials
        front.redirect_to = git_http.url("").rstrip("/")
        with pytest.raises(PermanentError, match="authentication failed"):
            clone_commit(front.url("repo"), repo.commit({"a": "1"}), MAIN, tmp_path / "work",
                         lambda _: None, auth=GitAuth(token=TOKEN))
    assert git_http.attempts, "git followed the redirect"
    assert TOKEN not in git_http.attempts and not git_http.users


def test_git_stderr_in_errors_is_scrubbed_of_the_token_and_key():
    body = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"
    key = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n"
    auth = GitAuth(token=TOKEN, ssh_private_key=key)
    url = "https://u:p%40ss@h/r.git"
    exc = GitCommandError(["git", "fetch"], 128, stderr=f"fatal: {TOKEN} at {url} {body}")
    text = _stderr(exc, url, auth.secrets())
    assert_no_secret([TOKEN, body, "p%40ss"], text)
    assert "https://h/r.git" in text
    assert TOKEN not in repr(auth) and "PRIVATE" not in repr(auth)


# --- SSH: a private sshd on 127.0.0.1 ---------------------------------------------------------


@dataclass
class Sshd:
    port: int
    host_key: str  # the public host key line ("ssh-ed25519 AAAA...")
    keys: dict[str, str] = field(default_factory=dict)  # private key texts

    @property
    def known_hosts(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key}\n"

    def url(self, path: Path) -> str:
        return f"ssh://root@127.0.0.1:{self.port}{path}"


def _keygen(path: Path) -> tuple[str, str]:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
                   check=True, capture_output=True)
    public = " ".join(path.with_suffix(".pub").read_text().split()[:2])
    return path.read_text(), public


@pytest.fixture(scope="module")
def sshd(tmp_path_factory) -> Iterator[Sshd]:
    binary = Path("/usr/sbin/sshd")
    if not binary.exists():
        pytest.skip("openssh-server is not installed (no /usr/sbin/sshd): apt-get install openssh-server")
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("the OpenSSH client (ssh, ssh-keygen) is not installed")
    if os.geteuid() != 0:
        pytest.skip("the private sshd needs root (it logs in as root, with its privilege separation)")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    root = tmp_path_factory.mktemp("sshd")
    _, host_public = _keygen(root / "host_key")
    keys = {name: _keygen(root / name) for name in ("deploy_key", "other_host_key", "wrong_key")}
    (root / "authorized_keys").write_text(keys["deploy_key"][1] + "\n")
    for attempt in range(3):
        port = free_port()
        config = root / "sshd_config"
        config.write_text(
            f"HostKey {root / 'host_key'}\nListenAddress 127.0.0.1\nPort {port}\n"
            f"AuthorizedKeysFile {root / 'authorized_keys'}\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n"
            f"StrictModes no\nPidFile {root / 'sshd.pid'}\nAcceptEnv GIT_PROTOCOL\n"
        )
        log_path = root / f"sshd-{attempt}.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen([str(binary), "-D", "-e", "-f", str(config)],
                                       stdout=subprocess.DEVNULL, stderr=log_file)
        deadline = time.monotonic() + 10
        while b"Server listening" not in log_path.read_bytes() and process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"sshd did not start:\n{log_path.read_text()}")
            time.sleep(0.02)
        if process.poll() is None:
            break
        if b"Address already in use" not in log_path.read_bytes():
            pytest.fail(f"sshd exited:\n{log_path.read_text()}")
    else:
        pytest.fail("sshd found no free port")
    server = Sshd(port, host_public, {name: private for name, (private, _) in keys.items()})
    server.keys["other_host_public"] = keys["other_host_key"][1]
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture
def ssh_spy(tmp_path, monkeypatch) -> Path:
    """An ``ssh`` first on PATH that records the -i key file's mode, then runs the real ssh."""
    real = shutil.which("ssh")
    calls = tmp_path / "ssh-calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    spy = bin_dir / "ssh"
    spy.write_text(
        "#!/bin/sh\nkey=\nprev=\nfor arg in \"$@\"; do\n"
        "  [ \"$prev\" = -i ] && key=\"$arg\"\n  prev=\"$arg\"\ndone\n"
        f"if [ -n \"$key\" ]; then stat -c '%a %n' \"$key\" >> '{calls}'; fi\n"
        f"exec '{real}' \"$@\"\n"
    )
    spy.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_a_deploy_key_clones_the_commit_and_is_removed_afterwards(
        make_repo, sshd, ssh_spy, private_tmp, tmp_path):
    repo = make_repo()
    wanted = repo.commit({"a.txt": "one"}, "one")
    repo.commit({"a.txt": "two"}, "two")
    lines: list[str] = []
    auth = GitAuth(ssh_private_key=sshd.keys["deploy_key"], ssh_known_hosts=sshd.known_hosts)
    checkout = clone_commit(sshd.url(repo.path), wanted, MAIN, tmp_path / "work", lines.append, auth=auth)

    assert git(checkout, "rev-parse", "HEAD") == wanted
    assert (checkout / "a.txt").read_text() == "one"
    calls = ssh_spy.read_text().splitlines()
    assert calls, "git ran ssh with the deploy key"
    for call in calls:
        mode, key_path = call.split(" ", 1)
        assert mode == "600"
        assert Path(key_path).parent.parent == private_tmp, "a private temp dir outside the checkout"
        assert not Path(key_path).exists()
    assert list(private_tmp.iterdir()) == []
    key_lines = [line for line in sshd.keys["deploy_key"].splitlines() if "PRIVATE KEY" not in line]
    assert_no_secret(key_lines, "\n".join(lines), (checkout / ".git" / "config").read_text())


@pytest.mark.parametrize("known", ["changed", "unknown"])
def test_a_host_key_not_in_known_hosts_fails_verification(make_repo, sshd, private_tmp, tmp_path, known):
    repo = make_repo()
    other = sshd.keys["other_host_public"]
    known_hosts = (f"[127.0.0.1]:{sshd.port} {other}\n" if known == "changed"
                   else f"git.example.com {sshd.host_key}\n")
    auth = GitAuth(ssh_private_key=sshd.keys["deploy_key"], ssh_known_hosts=known_hosts)
    lines: list[str] = []
    with pytest.raises(PermanentError, match="host key verification failed") as caught:
        clone_commit(sshd.url(repo.path), repo.commit({"a": "1"}), MAIN, tmp_path / "work",
                     lines.append, auth=auth)
    assert not any("does not serve commits by id" in line for line in lines)
    key_lines = [line for line in sshd.keys["deploy_key"].splitlines() if "PRIVATE KEY" not in line]
    assert_no_secret(key_lines, str(caught.value), "\n".join(lines))
    assert list(private_tmp.iterdir()) == []


def test_a_wrong_deploy_key_is_an_authentication_error(make_repo, sshd, private_tmp, tmp_path):
    repo = make_repo()
    auth = GitAuth(ssh_private_key=sshd.keys["wrong_key"], ssh_known_hosts=sshd.known_hosts)
    lines: list[str] = []
    with pytest.raises(PermanentError, match="authentication failed") as caught:
        clone_commit(sshd.url(repo.path), repo.commit({"a": "1"}), MAIN, tmp_path / "work",
                     lines.append, auth=auth)
    assert not any("does not serve commits by id" in line for line in lines)
    key_lines = [line for line in sshd.keys["wrong_key"].splitlines() if "PRIVATE KEY" not in line]
    assert_no_secret(key_lines, str(caught.value), "\n".join(lines))
    assert list(private_tmp.iterdir()) == []
