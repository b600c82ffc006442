"""resolve_ref against real git repositories: which ref and commit a manual run builds."""

from __future__ import annotations

import pytest

from builder.errors import InputError, NotFound, TransientError
from builder.builds.manual_runs import resolve_ref
from tests.conftest import git


@pytest.fixture
def repo(make_repo):
    repo = make_repo()
    git(repo.path, "checkout", "-q", "-b", "feature")
    repo.feature = repo.commit({"feature.txt": "f"}, "feature work")
    git(repo.path, "checkout", "-q", "main")
    repo.main = repo.commit({"README.md": "hello"}, "main work")
    return repo


def test_a_branch_resolves_to_its_tip(repo):
    assert resolve_ref(repo.url, branch="main") == ("refs/heads/main", "branch", "main", repo.main)
    assert resolve_ref(repo.url, branch="feature") == ("refs/heads/feature", "branch", "feature", repo.feature)


def test_a_lightweight_tag_resolves_to_its_commit(repo):
    sha = repo.tag("v1.0.0")
    assert resolve_ref(repo.url, tag="v1.0.0") == ("refs/tags/v1.0.0", "tag", "v1.0.0", sha)


def test_an_annotated_tag_resolves_to_the_peeled_commit_not_the_tag_object(repo):
    git(repo.path, "tag", "-a", "v2.0.0", "-m", "release 2")
    tag_object = git(repo.path, "rev-parse", "v2.0.0")
    assert tag_object != repo.main
    assert resolve_ref(repo.url, tag="v2.0.0") == ("refs/tags/v2.0.0", "tag", "v2.0.0", repo.main)


def test_a_sha_alone_is_that_commit_on_the_default_branch(repo):
    old = git(repo.path, "rev-parse", "HEAD~1")
    assert resolve_ref(repo.url, sha=old, default_branch="main") == ("refs/heads/main", "branch", "main", old)
    # Without the trigger's default branch, the remote's HEAD branch is used.
    assert resolve_ref(repo.url, sha=old) == ("refs/heads/main", "branch", "main", old)


def test_a_short_sha_is_expanded_when_it_is_the_branch_tip_and_kept_otherwise(repo):
    assert resolve_ref(repo.url, sha=repo.main[:7].upper()).commit == repo.main
    old = git(repo.path, "rev-parse", "HEAD~1")
    assert resolve_ref(repo.url, sha=old[:10]).commit == old[:10]


def test_a_sha_with_a_branch_is_that_commit_on_that_branch(repo):
    assert resolve_ref(repo.url, branch="feature", sha=repo.feature) == (
        "refs/heads/feature", "branch", "feature", repo.feature)


def test_an_unknown_branch_or_tag_is_not_found(repo):
    with pytest.raises(NotFound, match="branch 'nope' not found"):
        resolve_ref(repo.url, branch="nope")
    with pytest.raises(NotFound, match="tag 'v9' not found"):
        resolve_ref(repo.url, tag="v9")
    with pytest.raises(NotFound, match="branch 'gone' not found"):
        resolve_ref(repo.url, sha=repo.main, default_branch="gone")


def test_a_branch_name_is_matched_exactly_not_by_its_tail(repo):
    git(repo.path, "branch", "team/main")
    git(repo.path, "branch", "-D", "feature")
    with pytest.raises(NotFound):
        resolve_ref(repo.url, branch="feature")
    assert resolve_ref(repo.url, branch="team/main").ref == "refs/heads/team/main"


@pytest.mark.parametrize("kwargs", [
    {},
    {"branch": "main", "tag": "v1"},
    {"tag": "v1", "sha": "abcdef1"},
    {"sha": "xyz1234"},
    {"sha": "abc"},
    {"sha": "a" * 41},
    {"branch": "--upload-pack=touch /tmp/x"},
    {"branch": "a..b"},
    {"tag": ""},
])
def test_bad_choices_are_input_errors_before_any_git_command(kwargs):
    with pytest.raises(InputError) as caught:
        resolve_ref("file:///does/not/exist", **kwargs)
    assert type(caught.value) is InputError and caught.value.status == 400


def test_an_unreachable_remote_is_a_transient_error_without_the_credentials():
    with pytest.raises(TransientError, match="unreachable") as caught:
        resolve_ref("http://deploy:s3cr%40t@127.0.0.1:9/x.git", branch="main")
    message = str(caught.value)
    assert "127.0.0.1:9" in message
    assert "s3cr" not in message and "deploy" not in message


def test_extra_environment_is_given_to_git(repo, tmp_path):
    # GIT_CONFIG_* through the environment, as builder.builds.run.clone hands credentials to git.
    env = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "url.file://.insteadOf",
           "GIT_CONFIG_VALUE_0": "mirror:"}
    assert resolve_ref(f"mirror:{repo.path}", branch="main", env=env).commit == repo.main
