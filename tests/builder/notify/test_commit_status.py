"""Commit statuses against a real local HTTP server that plays every Git host."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from builder.notify.commit_status import (
    CommitStatus,
    StatusTarget,
    host_state,
    report_status,
    report_with_retry,
)
from builder.errors import PermanentError, TransientError
from tests.fake_git_host import FakeHost

TOKEN = "tok-s3cr3t-0123456789abcdef"
SHA = "0123456789abcdef0123456789abcdef01234567"
BUILD_URL = "https://buildhook.example.com/builds/42"


# provider -> (api_url suffix, repository, expected POST path, auth header name, value)
PROVIDERS: dict[str, tuple[str, str, str, str, str]] = {
    "github": ("/api/v3", "acme/widgets", f"/api/v3/repos/acme/widgets/statuses/{SHA}",
               "Authorization", f"token {TOKEN}"),
    "gitlab": ("", "acme/widgets", f"/api/v4/projects/acme%2Fwidgets/statuses/{SHA}",
               "PRIVATE-TOKEN", TOKEN),
    "bitbucket": ("/2.0", "acme/widgets", f"/2.0/repositories/acme/widgets/commit/{SHA}/statuses/build",
                  "Authorization", f"Bearer {TOKEN}"),
    "bitbucket-server": ("", "ACME/widgets", f"/rest/build-status/1.0/commits/{SHA}",
                         "Authorization", f"Bearer {TOKEN}"),
    "gitea": ("/api/v1", "acme/widgets", f"/api/v1/repos/acme/widgets/statuses/{SHA}",
              "Authorization", f"token {TOKEN}"),
}

STATES: dict[str, dict[str, str]] = {
    #                  queued       cloning/building/pushing      succeeded     failed     cancelled
    "github": dict(zip(["queued", "cloning", "building", "pushing", "succeeded", "failed", "cancelled"],
                       ["pending", "pending", "pending", "pending", "success", "failure", "error"])),
    "gitlab": dict(zip(["queued", "cloning", "building", "pushing", "succeeded", "failed", "cancelled"],
                       ["pending", "running", "running", "running", "success", "failed", "canceled"])),
    "bitbucket": dict(zip(["queued", "cloning", "building", "pushing", "succeeded", "failed", "cancelled"],
                          ["INPROGRESS"] * 4 + ["SUCCESSFUL", "FAILED", "STOPPED"])),
    "bitbucket-server": dict(zip(["queued", "cloning", "building", "pushing", "succeeded", "failed",
                                  "cancelled"], ["INPROGRESS"] * 4 + ["SUCCESSFUL", "FAILED", "FAILED"])),
    "gitea": dict(zip(["queued", "cloning", "building", "pushing", "succeeded", "failed", "cancelled"],
                      ["pending"] * 4 + ["success", "failure", "error"])),
}


def target_for(host: FakeHost, provider: str, token: str = TOKEN) -> StatusTarget:
    suffix, repository = PROVIDERS[provider][:2]
    return StatusTarget(provider=provider, api_url=host.url + suffix, repository=repository, token=token)


def a_status(state: str = "succeeded", description: str = "Pushed registry.example.com/acme/widgets:main",
             context: str = "buildhook") -> CommitStatus:
    return CommitStatus(sha=SHA, state=state, target_url=BUILD_URL, description=description, context=context)


def expected_body(provider: str, state: str, description: str, context: str) -> dict[str, str]:
    if provider in ("github", "gitea"):
        return {"state": state, "target_url": BUILD_URL, "description": description, "context": context}
    if provider == "gitlab":
        return {"state": state, "target_url": BUILD_URL, "description": description, "name": context}
    return {"state": state, "key": context, "name": context, "url": BUILD_URL, "description": description}


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- the requests each host gets ------------------------------------------------

@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_status_success_sends_one_documented_post_per_provider(host: FakeHost, provider: str) -> None:
    report_status(target_for(host, provider), a_status("succeeded", context="buildhook/docker"))

    _, _, path, auth_name, auth_value = PROVIDERS[provider]
    # Exactly one request: no GET /repos/... (PyGithub lazy) nor GET /projects/... (python-gitlab lazy).
    assert [(r.method, r.path) for r in host.requests] == [("POST", path)]
    seen = host.requests[0]
    assert seen.headers[auth_name] == auth_value
    assert seen.json == expected_body(provider, STATES[provider]["succeeded"],
                                      "Pushed registry.example.com/acme/widgets:main", "buildhook/docker")


def test_github_status_success_sends_pygithub_request_with_token_auth(host: FakeHost) -> None:
    report_status(target_for(host, "github"), a_status("building", description="Building Dockerfile"))

    (seen,) = host.requests
    assert seen.path == f"/api/v3/repos/acme/widgets/statuses/{SHA}"
    assert seen.headers["Authorization"] == f"token {TOKEN}"
    assert seen.json == {"state": "pending", "target_url": BUILD_URL,
                         "description": "Building Dockerfile", "context": "buildhook"}


def test_gitlab_status_uses_url_encoded_project_path_and_name_for_context(host: FakeHost) -> None:
    target = StatusTarget("gitlab", host.url, "group/sub/widgets", TOKEN)
    report_status(target, a_status("pushing"))

    (seen,) = host.requests
    assert seen.path == f"/api/v4/projects/group%2Fsub%2Fwidgets/statuses/{SHA}"
    assert seen.json["state"] == "running"
    assert seen.json["name"] == "buildhook" and "context" not in seen.json


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize("state", ["queued", "cloning", "building", "pushing", "succeeded", "failed",
                                   "cancelled"])
def test_each_build_state_reaches_the_host_in_its_own_vocabulary(host: FakeHost, provider: str,
                                                                 state: str) -> None:
    report_status(target_for(host, provider), a_status(state))

    (seen,) = host.posts()
    assert seen.json["state"] == STATES[provider][state] == host_state(provider, state)


def test_github_description_is_cut_to_140_characters(host: FakeHost) -> None:
    report_status(target_for(host, "github"), a_status(description="x" * 300))

    description = host.requests[0].json["description"]
    assert len(description) == 140 and description.endswith("…")


def test_long_description_is_sent_whole_to_hosts_without_the_github_limit(host: FakeHost) -> None:
    report_status(target_for(host, "gitea"), a_status(description="y" * 300))

    assert host.requests[0].json["description"] == "y" * 300


# --- the error taxonomy -------------------------------------------------------

@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize("code", [500, 502, 503, 429])
def test_server_errors_and_rate_limits_are_transient(host: FakeHost, provider: str, code: int) -> None:
    host.fail(code)

    with pytest.raises(TransientError, match=str(code)):
        report_status(target_for(host, provider), a_status())
    assert len(host.requests) == 1  # the libraries' own retries are off: retrying is ours


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize("code", [400, 401, 403, 404, 422])
def test_client_errors_are_permanent_and_carry_the_hosts_message(host: FakeHost, provider: str,
                                                                 code: int) -> None:
    host.fail(code, message="No commit found for SHA")

    with pytest.raises(PermanentError) as caught:
        report_status(target_for(host, provider), a_status())
    assert str(code) in str(caught.value)
    assert "No commit found for SHA" in str(caught.value)
    assert len(host.requests) == 1


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_connection_refused_is_transient(provider: str) -> None:
    target = StatusTarget(provider, closed_port_url() + PROVIDERS[provider][0], PROVIDERS[provider][1], TOKEN)

    with pytest.raises(TransientError, match="unreachable"):
        report_status(target, a_status())


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_a_host_slower_than_the_timeout_is_transient(host: FakeHost, provider: str) -> None:
    host.delay = 2.5  # PyGithub takes whole seconds only: its 0.3 becomes 1

    started = time.monotonic()
    with pytest.raises(TransientError):
        report_status(target_for(host, provider), a_status(), timeout=0.3)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("provider", ["bitbucket", "gitea"])
def test_a_redirect_is_permanent_and_not_followed_as_a_get(host: FakeHost, provider: str) -> None:
    host.fail(301, message="Moved")

    with pytest.raises(PermanentError):
        report_status(target_for(host, provider), a_status())
    assert len(host.requests) == 1


def test_unknown_provider_or_state_or_repository_is_permanent_without_a_request(host: FakeHost) -> None:
    with pytest.raises(PermanentError, match="provider"):
        report_status(StatusTarget("sourcehut", host.url, "a/b", TOKEN), a_status())
    with pytest.raises(PermanentError, match="state"):
        report_status(target_for(host, "github"), a_status("exploded"))
    with pytest.raises(PermanentError, match="OWNER/NAME"):
        report_status(StatusTarget("github", host.url, "widgets", TOKEN), a_status())
    assert host.requests == []


# --- report_with_retry --------------------------------------------------------

@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_retry_rides_out_two_server_errors_then_succeeds(host: FakeHost, provider: str) -> None:
    host.fail(500, times=2)
    sleeps: list[float] = []

    assert report_with_retry(target_for(host, provider), a_status(), sleep=sleeps.append) is True

    assert len(host.requests) == 3
    assert len(sleeps) == 2
    assert 1.0 <= sleeps[0] <= 1.5 and 2.0 <= sleeps[1] <= 3.0  # exponential backoff plus jitter


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_retry_gives_up_on_not_found_after_one_request(host: FakeHost, provider: str) -> None:
    host.fail(404, times=5)
    sleeps: list[float] = []

    assert report_with_retry(target_for(host, provider), a_status(), sleep=sleeps.append) is False
    assert len(host.requests) == 1 and sleeps == []


def test_retry_returns_false_after_all_attempts_fail(host: FakeHost) -> None:
    host.fail(503, times=10)

    assert report_with_retry(target_for(host, "gitlab"), a_status(), attempts=4,
                             sleep=lambda s: None, base_delay=0.01) is False
    assert len(host.requests) == 4


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_retry_on_connection_refused_returns_false_without_raising(provider: str) -> None:
    target = StatusTarget(provider, closed_port_url() + PROVIDERS[provider][0], PROVIDERS[provider][1], TOKEN)
    sleeps: list[float] = []

    assert report_with_retry(target, a_status(), sleep=sleeps.append) is False
    assert len(sleeps) == 2


def test_retry_returns_false_on_an_unknown_state_without_raising(host: FakeHost) -> None:
    assert report_with_retry(target_for(host, "github"), a_status("exploded"), sleep=lambda s: None) is False
    assert host.requests == []


# --- the token stays secret ------------------------------------------------------

@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_token_never_appears_in_logs_or_errors_even_when_the_host_echoes_it(
    host: FakeHost, provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    host.fail(500, times=3, message=f"upstream choked on token {TOKEN}")
    host.fail(401, message=f"Bad credentials: {TOKEN}")
    target = target_for(host, provider)

    assert report_with_retry(target, a_status(), sleep=lambda s: None) is False
    assert report_with_retry(target, a_status(), sleep=lambda s: None) is False
    with pytest.raises(TransientError) as transient:
        report_status(StatusTarget(provider, closed_port_url(), "acme/widgets", TOKEN), a_status())

    assert len(host.requests) == 4
    assert "Bad credentials: ***" in caplog.text and "upstream choked on token ***" in caplog.text
    assert TOKEN not in caplog.text
    assert TOKEN not in str(transient.value)
    assert TOKEN not in repr(target)


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_permanent_error_text_is_redacted(host: FakeHost, provider: str) -> None:
    host.fail(403, message=f"token {TOKEN} lacks repo:status")

    with pytest.raises(PermanentError) as caught:
        report_status(target_for(host, provider), a_status())
    assert TOKEN not in str(caught.value) and "token *** lacks repo:status" in str(caught.value)
