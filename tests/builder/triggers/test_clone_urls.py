"""Clone URLs git may be given: network URLs always, local ones only with BUILDHOOK_ALLOW_FILE_CLONES."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from builder.builds.run import pipeline
from builder.builds.run.clone import clone_commit
from builder.triggers.clone_urls import check_clone_url, clone_url_problem
from builder.db.engine import make_engine, make_sessionmaker, migrate
from builder.errors import InputError, PermanentError
from builder.db.models import Build, BuildLogLine
from builder.settings import ConfigError, Settings


@pytest.mark.parametrize("url", [
    "https://github.com/acme/widget.git",
    "http://127.0.0.1:8080/acme/widget.git",
    "https://x-access-token:ghp_secret@github.com/acme/widget.git",
    "ssh://git@git.example.com:2222/acme/widget.git",
    "git@github.com:acme/widget.git",
    "git.example.com:acme/widget.git",
])
def test_network_urls_are_allowed_whatever_the_setting(url):
    assert clone_url_problem(url, False) is None and clone_url_problem(url, True) is None


@pytest.mark.parametrize("url, message", [
    ("ext::sh -c touch% /tmp/pwned", "uses git's ext:: transport, which is not allowed"),
    ("fd::0", "uses git's fd:: transport, which is not allowed"),
    ("fd::3,4", "uses git's fd:: transport"),
    ("::srv/git/widget.git", "uses git's :: transport"),
    ("ext://sh -c touch% /tmp/pwned", "has the scheme ext://"),
    ("-uhelp", "starts with '-': git would read it as an option"),
    ("ssh://-oProxyCommand=touch%20x/acme/widget.git", "starting with '-'"),
    ("git@-oProxyCommand=x:acme/widget.git", "starting with '-'"),
    ("git://git.example.com/acme/widget.git", "has the scheme git://, which is not allowed"),
    ("ftp://user:hunter2@ftp.example.com/widget.git", "has the scheme ftp://"),
    ("https:///acme/widget.git", "has no host"),
    ("https://github.com/acme/widget.git\n", "control characters"),
])
def test_other_transports_and_option_lookalikes_are_refused_even_with_file_clones(url, message):
    for allow_file in (False, True):
        problem = clone_url_problem(url, allow_file)
        assert problem is not None and message in problem, problem
        assert "hunter2" not in problem
        with pytest.raises(InputError, match="clone URL"):
            check_clone_url(url, allow_file)


@pytest.mark.parametrize("url", ["file:///srv/git/widget.git", "/srv/git/widget.git", "widget"])
def test_local_repositories_need_the_setting(url):
    refused = clone_url_problem(url, False)
    assert refused is not None and "only with BUILDHOOK_ALLOW_FILE_CLONES=1" in refused
    assert clone_url_problem(url, True) is None


def test_the_setting_is_read_from_the_environment_and_off_by_default():
    assert Settings.from_env({"BUILDHOOK_SECRET_KEY": "k"}).allow_file_clones is False
    assert Settings.from_env({"BUILDHOOK_SECRET_KEY": "k", "BUILDHOOK_ALLOW_FILE_CLONES": "1"}).allow_file_clones
    assert not Settings.from_env({"BUILDHOOK_SECRET_KEY": "k", "BUILDHOOK_ALLOW_FILE_CLONES": "false"}).allow_file_clones
    with pytest.raises(ConfigError, match="BUILDHOOK_ALLOW_FILE_CLONES"):
        Settings.from_env({"BUILDHOOK_SECRET_KEY": "k", "BUILDHOOK_ALLOW_FILE_CLONES": "maybe"})


def test_git_itself_refuses_the_fd_transport_instead_of_waiting_on_it(tmp_path):
    """Whatever reaches git: ``GIT_ALLOW_PROTOCOL`` makes it refuse ``fd::0`` at once (it used to wait
    on the descriptor forever)."""
    started = time.monotonic()
    with pytest.raises(PermanentError, match="transport 'fd' not allowed"):
        clone_commit("fd::0", "a" * 40, "refs/heads/main", tmp_path / "src", lambda _line: None)
    assert time.monotonic() - started < 10


@pytest.fixture
def sessions(tmp_path):
    url = f"sqlite:///{tmp_path / 'clone-urls.db'}"
    migrate(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("url, allow_file, message", [
    ("fd::0", True, "uses git's fd:: transport, which is not allowed"),
    ("ext::sh -c sleep% 600", True, "uses git's ext:: transport, which is not allowed"),
    ("file:///srv/git/widget.git", False, "only with BUILDHOOK_ALLOW_FILE_CLONES=1"),
])
def test_a_build_of_a_refused_clone_url_fails_at_once_before_git_runs(sessions, tmp_path, url, allow_file, message):
    """A build queued before the checks existed (its trigger stored with such a URL) never reaches git."""
    with sessions() as session:
        build = Build(provider="github", repository="acme/legacy", clone_url=url, ref="refs/heads/main",
                      ref_type="branch", ref_name="main", commit="a" * 40, image="127.0.0.1:5000/acme/legacy",
                      tags=["main"], dockerfile="Dockerfile", context=".")
        session.add(build)
        session.commit()
        build_id = build.id
    settings = Settings(database_url="sqlite://", secret_key="k", data_dir=tmp_path, allow_file_clones=allow_file)
    started = time.monotonic()
    outcome = pipeline.run_build(sessions, settings, build_id)
    assert outcome is pipeline.Outcome.FAILED
    assert time.monotonic() - started < 20
    with sessions() as session:
        build = session.get(Build, build_id)
        log = list(session.scalars(select(BuildLogLine.text).where(BuildLogLine.build_id == build_id)))
    assert message in build.error and build.attempts == 1
    assert not any(line.startswith("Fetching") for line in log), log
