"""What every forge's commit-status sender shares: the target and status, the error taxonomy
(5xx, 408, 429, connection errors and timeouts are ``TransientError``; any other refusal is
``PermanentError`` with the host's message), a plain JSON post and token redaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from builder.errors import PermanentError, TransientError

# Answers that retrying later may fix, whatever the host.
TRANSIENT_CLIENT_ERRORS = (408, 429)


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


def split_repository(target: StatusTarget, parts: int | None) -> list[str]:
    """The repository's path segments; ``PermanentError`` unless OWNER/NAME (``parts`` of them, if given)."""
    pieces = target.repository.strip("/").split("/")
    if any(not p for p in pieces) or len(pieces) < 2 or (parts is not None and len(pieces) != parts):
        raise PermanentError(f"{target.provider} repository {target.repository!r} is not OWNER/NAME")
    return pieces


def quoted(segment: str) -> str:
    return quote(segment, safe="")


def post_status(target: StatusTarget, url: str, authorization: str, body: dict[str, str], timeout: float) -> None:
    headers = {"Authorization": authorization, "Accept": "application/json",
               "User-Agent": "buildhook"}
    try:
        response = requests.post(url, json=body, headers=headers, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        raise unreachable(target, exc) from None
    if 200 <= response.status_code < 300:
        return
    if 300 <= response.status_code < 400:
        where = response.headers.get("Location", "elsewhere")
        raise PermanentError(f"{target.provider} redirected the status post to {where}: check api_url")
    raise classify(target, response.status_code, _host_message(response))


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


def classify(target: StatusTarget, code: int | None, message: str) -> PermanentError | TransientError:
    text = f"{target.provider} answered HTTP {code} for {target.repository}: {message}".rstrip(": ")
    text = redact(text, target.token)
    if code is not None and (code >= 500 or code in TRANSIENT_CLIENT_ERRORS):
        return TransientError(text)
    return PermanentError(text)


def unreachable(target: StatusTarget, exc: Exception) -> TransientError:
    return TransientError(redact(f"{target.provider} unreachable at {target.api_url}: "
                                 f"{type(exc).__name__}: {exc}", target.token))


def redact(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text
