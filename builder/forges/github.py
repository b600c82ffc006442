"""GitHub (and GitHub Enterprise Server) webhooks.

Headers: ``X-GitHub-Event``, ``X-GitHub-Delivery``, ``X-GitHub-Hook-ID`` and
``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import github as pygithub
import requests
from github import GithubException

from builder.errors import PermanentError
from builder.forges.base import Forge
from builder.intake.events import ZERO_SHA, Ignored, PushEvent
from builder.forges import github_shaped
from builder.forges.status_http import CommitStatus, StatusTarget, classify, redact, split_repository, unreachable
from builder.forges.request import (
    HookInfo,
    clean_text,
    commit_id,
    dig,
    header,
    load_json,
    read_ref,
    require_hmac_sha256,
    shown,
    touched_files,
)

NAME = "github"
# GitHub lists at most 20 commits in a push payload.
MAX_LISTED_COMMITS = 20
# pull_request actions that build the request's head (closed, labeled, edited... are recorded, not built).
PULL_REQUEST_ACTIONS = ("opened", "synchronize", "reopened")


def describe(headers: Mapping[str, str], body: bytes) -> HookInfo:
    payload = load_json(body)
    delivery = header(headers, "X-GitHub-Delivery")
    hook_id = header(headers, "X-GitHub-Hook-ID") or ""
    repository = dig(payload, "repository", "full_name")
    return HookInfo(
        event=header(headers, "X-GitHub-Event"),
        delivery_id=delivery,
        repository=repository if isinstance(repository, str) else None,
        dedupe_key=f"{NAME}:{hook_id}:{delivery}" if delivery else None,
    )


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> None:
    require_hmac_sha256(body, secret, header(headers, "X-Hub-Signature-256"), prefix="sha256=")


def parse(headers: Mapping[str, str], body: bytes) -> tuple[PushEvent, ...]:
    event = header(headers, "X-GitHub-Event")
    if event == "ping":
        raise Ignored("ping", status=200)
    if event == "pull_request":
        return _pull_request(load_json(body))
    if event != "push":
        raise Ignored(f"event {event!r} is recorded but not built")
    payload = load_json(body)
    ref, ref_type, ref_name = read_ref(payload.get("ref"))
    if payload.get("deleted"):
        raise Ignored(f"{ref_type} {shown(ref_name)} was deleted")
    head = payload.get("head_commit") if isinstance(payload.get("head_commit"), dict) else {}
    sent = head.get("id") or payload.get("after")
    commit = commit_id(sent)
    if commit == ZERO_SHA:
        raise Ignored(f"{ref_type} {shown(ref_name)} was deleted")
    if commit is None:
        raise Ignored("push without a head commit" if not sent else f"head commit {shown(sent)} is not a commit id")
    return github_shaped.push(NAME, payload, (ref, ref_type, ref_name), commit, head, _author(head, payload),
                              _changed_files(payload))


def _pull_request(payload: dict[str, Any]) -> tuple[PushEvent, ...]:
    return github_shaped.pull_request(NAME, payload, PULL_REQUEST_ACTIONS)


def _author(head: dict[str, Any], payload: dict[str, Any]) -> str | None:
    name = dig(head, "author", "username") or dig(head, "author", "name")
    if not name:
        name = dig(payload, "pusher", "name") or dig(payload, "sender", "login")
    return clean_text(name, 255)


def _changed_files(payload: dict[str, Any]) -> tuple[str, ...] | None:
    """Files touched by the push, or None when the payload's list is incomplete."""
    commits = payload.get("commits")
    if payload.get("created") or not isinstance(commits, list) or not commits:
        return None
    if len(commits) >= MAX_LISTED_COMMITS:
        return None
    return touched_files(commits)


class GitHubForge(Forge):
    name = NAME
    display_name = "GitHub"
    signature_header = "X-Hub-Signature-256 (GitHub)"
    default_api_url = "https://api.github.com"
    secret_headers = ("X-Hub-Signature-256",)
    # No "cancelled": "error" is non-green but tells it apart from a failed build.
    status_words = {"pending": "pending", "running": "pending", "success": "success",
                    "failure": "failure", "cancelled": "error"}
    setup_steps = (
        "Open the repository on GitHub: Settings → Webhooks → Add webhook.",
        "Payload URL: the webhook URL below.",
        "Content type: application/json.",
        "Secret: the secret below.",
        "Which events: “Just the push event”. Keep “Active” checked, then Add webhook.",
        "GitHub sends a ping at once: it appears under Recent deliveries on this trigger's page.",
    )
    describe = staticmethod(describe)
    verify = staticmethod(verify)
    parse = staticmethod(parse)

    def send_status(self, target: StatusTarget, status: CommitStatus, state: str, timeout: float) -> None:
        send_status(target, status, state, timeout)


# --- commit status, through PyGithub ----------------------------------------

DESCRIPTION_MAX = 140


def send_status(target: StatusTarget, status: CommitStatus, state: str, timeout: float) -> None:
    owner, name = split_repository(target, parts=2)
    client = pygithub.Github(
        base_url=target.api_url.rstrip("/"),
        auth=pygithub.Auth.Token(target.token),
        timeout=max(1, math.ceil(timeout)),  # PyGithub insists on whole seconds
        retry=None,  # retries are ours to make
        lazy=True,  # no GET /repos/{owner}/{repo} before the POST; get_commit is lazy already
    )
    description = status.description
    if len(description) > DESCRIPTION_MAX:
        description = description[: DESCRIPTION_MAX - 1] + "…"
    try:
        client.get_repo(f"{owner}/{name}").get_commit(status.sha).create_status(
            state, target_url=status.target_url, description=description, context=status.context
        )
    except GithubException as exc:
        raise classify(target, exc.status, _error_message(exc)) from None
    except requests.RequestException as exc:
        raise unreachable(target, exc) from None
    except RuntimeError as exc:  # PyGithub's answer to a redirect elsewhere
        raise PermanentError(redact(f"github: {exc}", target.token)) from None
    finally:
        client.close()


def _error_message(exc: GithubException) -> str:
    data = exc.data
    if isinstance(data, dict):
        message = str(data.get("message") or "")
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            details = [e.get("message") or e.get("code") if isinstance(e, dict) else str(e) for e in errors]
            message = f"{message} ({'; '.join(str(d) for d in details)})"
        return message or str(data)
    return str(data or exc.message or "")
