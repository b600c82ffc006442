"""Fetching exactly one commit with GitPython."""

from __future__ import annotations

import pytest

from builder.builds.run.clone import clone_commit, redact_url
from builder.errors import PermanentError, TransientError
from tests.conftest import git


def test_clone_fetches_only_the_pushed_commit(make_repo, tmp_path):
    repo = make_repo()
    wanted = repo.commit({"a.txt": "one"}, "one")
    repo.commit({"a.txt": "two"}, "two")
    lines: list[str] = []
    checkout = clone_commit(repo.url, wanted, "refs/heads/main", tmp_path / "work", lines.append)
    assert git(checkout, "rev-parse", "HEAD") == wanted
    assert (checkout / "a.txt").read_text() == "one"
    assert git(checkout, "rev-list", "--count", "--all") == "1", "a shallow fetch, not the history"
    assert (checkout / ".git" / "shallow").exists()
    assert any(wanted in line for line in lines)


def test_a_commit_the_remote_does_not_have_is_a_permanent_error(make_repo, tmp_path):
    repo = make_repo()
    with pytest.raises(PermanentError, match="could not fetch commit"):
        clone_commit(repo.url, "f" * 40, "refs/heads/main", tmp_path / "work", lambda _: None)


def test_an_unreachable_remote_is_a_transient_error(tmp_path):
    with pytest.raises(TransientError, match="unreachable"):
        clone_commit("http://127.0.0.1:9/nothing.git", "a" * 40, "refs/heads/main", tmp_path / "w",
                     lambda _: None)


def test_a_commit_id_that_is_not_hex_is_refused_before_git_runs(tmp_path):
    with pytest.raises(PermanentError, match="not a commit id"):
        clone_commit("file:///x", "--upload-pack=touch /tmp/pwned", "refs/heads/main", tmp_path / "w",
                     lambda _: None)
    assert not (tmp_path / "w").exists()


def test_credentials_in_clone_urls_are_redacted_for_logs():
    assert redact_url("https://x-token:ghp_secret@github.com/a/b.git") == "https://github.com/a/b.git"
    assert redact_url("https://github.com/a/b.git") == "https://github.com/a/b.git"
