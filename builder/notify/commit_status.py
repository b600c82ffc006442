"""Report a build's state back to the Git host as a commit status.

One function per host: GitHub (and GitHub Enterprise Server) through PyGithub,
GitLab through python-gitlab, Bitbucket Cloud, Bitbucket Data Center and
Gitea through plain HTTP with ``requests``.

Errors follow the shared taxonomy: a 5xx, 408, 429, a connection error or a
timeout raise ``TransientError``; any other refusal (4xx, redirects, an
unknown provider or state) raises ``PermanentError`` carrying the host's
message. The token never appears in a message or a log line.

``report_with_retry`` is what the pipeline calls: it retries transient errors
with backoff and jitter, logs, and answers ``False`` instead of raising, since
a failing status call must never fail a build.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote

import github
import gitlab
import requests
from github import GithubException

from builder.errors import PermanentError, TransientError

log = logging.getLogger(__name__)

# buildhook state -> phase; each host names the phases in its own words.
_PHASES: dict[str, str] = {
    "queued": "pending",
    "running": "running",
    "cloning": "running",
    "building": "running",
    "pushing": "running",
    "succeeded": "success",
    "failed": "failure",
    "cancelled": "cancelled",
    "superseded": "cancelled",
}

# GitHub and Gitea have no "cancelled": "error" is non-green but tells it apart
# from a failed build. Bitbucket Data Center's build-status 1.0 resource takes
# only INPROGRESS, SUCCESSFUL and FAILED (STOPPED is Bitbucket Cloud's).
_HOST_STATES: dict[str, dict[str, str]] = {
    "github": {"pending": "pending", "running": "pending", "success": "success",
               "failure": "failure", "cancelled": "error"},
    "gitlab": {"pending": "pending", "running": "running", "success": "success",
               "failure": "failed", "cancelled": "canceled"},
    "bitbucket": {"pending": "INPROGRESS", "running": "INPROGRESS", "success": "SUCCESSFUL",
                  "failure": "FAILED", "cancelled": "STOPPED"},
    "bitbucket-server": {"pending": "INPROGRESS", "running": "INPROGRESS", "success": "SUCCESSFUL",
                         "failure": "FAILED", "cancelled": "FAILED"},
    "gitea": {"pending": "pending", "running": "pending", "success": "success",
              "failure": "failure", "cancelled": "error"},
}

GITHUB_DESCRIPTION_MAX = 140
# Answers that retrying later may fix, whatever the host.
_TRANSIENT_CLIENT_ERRORS = (408, 429)


@dataclass(frozen=True)
class StatusTarget:
    provider: str
    api_url: str
    repository: str
    token: str = field(repr=False)


@dataclass(frozen=True)
class CommitStatus:
    sha: str
    state: str
    target_url: str
    description: str
    context: str = "buildhook"


def host_state(provider: str, state: str) -> str:
    """The host's word for buildhook ``state``; ``PermanentError`` if either is unknown."""
    if provider not in _HOST_STATES:
        raise PermanentError(f"unknown commit status provider {provider!r}")
    phase = _PHASES.get(str(getattr(state, "value", state)))
    if phase is None:
        raise PermanentError(f"unknown build state {state!r}")
    return _HOST_STATES[provider][phase]


def report_status(target: StatusTarget, status: CommitStatus, timeout: float = 10) -> None:
    """Set the commit status once. Raises ``TransientError`` or ``PermanentError``."""
    state = host_state(target.provider, status.state)
    if not status.sha:
        raise PermanentError("commit status without a commit sha")
    _SENDERS[target.provider](target, status, state, timeout)


def report_with_retry(
    target: StatusTarget,
    status: CommitStatus,
    attempts: int = 3,
    sleep: Callable[[float], None] = time.sleep,
    base_delay: float = 1.0,
    timeout: float = 10,
) -> bool:
    """Report, retrying transient errors; ``True`` once set, ``False`` (logged) if not."""
    what = f"{target.provider} status {status.state!r} for {target.repository}@{status.sha[:12]}"
    for attempt in range(1, max(attempts, 1) + 1):
        try:
            report_status(target, status, timeout=timeout)
            return True
        except PermanentError as exc:
            log.error("Could not set %s: %s", what, _redact(str(exc), target.token))
            return False
        except TransientError as exc:
            message = _redact(str(exc), target.token)
            if attempt >= attempts:
                log.error("Gave up setting %s after %d attempts: %s", what, attempt, message)
                return False
            delay = base_delay * 2 ** (attempt - 1)
            delay += random.uniform(0, delay / 2)
            log.warning("Setting %s failed (attempt %d of %d), retrying in %.1fs: %s",
                        what, attempt, attempts, delay, message)
            sleep(delay)
        except Exception as exc:  # a bug or a library surprise must not fail the build either
            log.error("Could not set %s: unexpected %s: %s", what, type(exc).__name__,
                      _redact(str(exc), target.token))
            return False
    return False


# --- GitHub ---------------------------------------------------------------

def _github(target: StatusTarget, status: CommitStatus, state: str, timeout: float) -> None:
    owner, name = _split(target, parts=2)
    client = github.Github(
        base_url=target.api_url.rstrip("/"),
        auth=github.Auth.Token(target.token),
        timeout=max(1, math.ceil(timeout)),  # PyGithub insists on whole seconds
        retry=None,  # retries are ours to make
        lazy=True,  # no GET /repos/{owner}/{repo} before the POST; get_commit is lazy already
    )
    description = status.description
    if len(description) > GITHUB_DESCRIPTION_MAX:
        description = description[: GITHUB_DESCRIPTION_MAX - 1] + "…"
    try:
        client.get_repo(f"{owner}/{name}").get_commit(status.sha).create_status(
            state, target_url=status.target_url, description=description, context=status.context
        )
    except GithubException as exc:
        raise _classify(target, exc.status, _github_message(exc)) from None
    except requests.RequestException as exc:
        raise _unreachable(target, exc) from None
    except RuntimeError as exc:  # PyGithub's answer to a redirect elsewhere
        raise PermanentError(_redact(f"github: {exc}", target.token)) from None
    finally:
        client.close()


def _github_message(exc: GithubException) -> str:
    data = exc.data
    if isinstance(data, dict):
        message = str(data.get("message") or "")
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            details = [e.get("message") or e.get("code") if isinstance(e, dict) else str(e) for e in errors]
            message = f"{message} ({'; '.join(str(d) for d in details)})"
        return message or str(data)
    return str(data or exc.message or "")


# --- GitLab ---------------------------------------------------------------

def _gitlab(target: StatusTarget, status: CommitStatus, state: str, timeout: float) -> None:
    _split(target, parts=None)
    client = gitlab.Gitlab(target.api_url.rstrip("/"), private_token=target.token, timeout=timeout)
    try:
        project = client.projects.get(target.repository, lazy=True)
        project.commits.get(status.sha, lazy=True).statuses.create(
            {"state": state, "target_url": status.target_url,
             "description": status.description, "name": status.context},
            obey_rate_limit=False,  # a 429 is a TransientError for our caller to retry
            retry_transient_errors=False,
        )
    except gitlab.exceptions.GitlabError as exc:
        raise _classify(target, exc.response_code, str(exc.error_message)) from None
    except requests.RequestException as exc:
        raise _unreachable(target, exc) from None
    finally:
        client.session.close()


# --- Bitbucket Cloud, Bitbucket Data Center, Gitea -------------------------

def _bitbucket(target: StatusTarget, status: CommitStatus, state: str, timeout: float) -> None:
    workspace, slug = _split(target, parts=2)
    url = (f"{target.api_url.rstrip('/')}/repositories/{_q(workspace)}/{_q(slug)}"
           f"/commit/{_q(status.sha)}/statuses/build")
    _post(target, url, f"Bearer {target.token}", _bitbucket_body(status, state), timeout)


def _bitbucket_server(target: StatusTarget, status: CommitStatus, state: str, timeout: float) -> None:
    _split(target, parts=2)  # PROJECT/slug: checked, though this resource keys on the commit alone
    url = f"{target.api_url.rstrip('/')}/rest/build-status/1.0/commits/{_q(status.sha)}"
    _post(target, url, f"Bearer {target.token}", _bitbucket_body(status, state), timeout)


def _bitbucket_body(status: CommitStatus, state: str) -> dict[str, str]:
    # The key identifies the status on the commit: a later post with the same key replaces it.
    return {"state": state, "key": status.context, "name": status.context,
            "url": status.target_url, "description": status.description}


def _gitea(target: StatusTarget, status: CommitStatus, state: str, timeout: float) -> None:
    owner, name = _split(target, parts=2)
    url = f"{target.api_url.rstrip('/')}/repos/{_q(owner)}/{_q(name)}/statuses/{_q(status.sha)}"
    body = {"state": state, "target_url": status.target_url,
            "description": status.description, "context": status.context}
    _post(target, url, f"token {target.token}", body, timeout)


def _post(target: StatusTarget, url: str, authorization: str, body: dict[str, str], timeout: float) -> None:
    headers = {"Authorization": authorization, "Accept": "application/json",
               "User-Agent": "buildhook"}
    try:
        response = requests.post(url, json=body, headers=headers, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        raise _unreachable(target, exc) from None
    if 200 <= response.status_code < 300:
        return
    if 300 <= response.status_code < 400:
        where = response.headers.get("Location", "elsewhere")
        raise PermanentError(f"{target.provider} redirected the status post to {where}: check api_url")
    raise _classify(target, response.status_code, _host_message(response))


def _host_message(response: requests.Response) -> str:
    """The error text in Bitbucket Cloud, Bitbucket Data Center and Gitea answers."""
    try:
        data: Any = response.json()
    except ValueError:
        return response.text[:300] or response.reason or ""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):  # Bitbucket Cloud
            return str(error["message"])
        errors = data.get("errors")
        if isinstance(errors, list) and errors:  # Bitbucket Data Center
            return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
        if data.get("message"):  # Gitea
            return str(data["message"])
    return str(data)[:300]


# --- shared ------------------------------------------------------------------

_SENDERS: dict[str, Callable[[StatusTarget, CommitStatus, str, float], None]] = {
    "github": _github,
    "gitlab": _gitlab,
    "bitbucket": _bitbucket,
    "bitbucket-server": _bitbucket_server,
    "gitea": _gitea,
}


def _split(target: StatusTarget, parts: int | None) -> list[str]:
    pieces = target.repository.strip("/").split("/")
    if any(not p for p in pieces) or len(pieces) < 2 or (parts is not None and len(pieces) != parts):
        raise PermanentError(f"{target.provider} repository {target.repository!r} is not OWNER/NAME")
    return pieces


def _q(segment: str) -> str:
    return quote(segment, safe="")


def _classify(target: StatusTarget, code: int | None, message: str) -> PermanentError | TransientError:
    text = f"{target.provider} answered HTTP {code} for {target.repository}: {message}".rstrip(": ")
    text = _redact(text, target.token)
    if code is not None and (code >= 500 or code in _TRANSIENT_CLIENT_ERRORS):
        return TransientError(text)
    return PermanentError(text)


def _unreachable(target: StatusTarget, exc: Exception) -> TransientError:
    return TransientError(_redact(f"{target.provider} unreachable at {target.api_url}: "
                                  f"{type(exc).__name__}: {exc}", target.token))


def _redact(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text
