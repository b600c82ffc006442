"""GitLab (gitlab.com and self-managed) webhooks.

Headers: ``X-Gitlab-Event`` (``Push Hook``, ``Tag Push Hook``, ...),
``X-Gitlab-Token`` (the secret token as plain text, not an HMAC) and, on
recent versions, ``Idempotency-Key``, ``X-Gitlab-Event-UUID``,
``X-Gitlab-Webhook-UUID`` and ``X-Gitlab-Instance``.
"""

from __future__ import annotations

import hmac
from typing import Any, Mapping

import gitlab as python_gitlab
import requests

from builder.errors import BadSignature
from builder.forges.base import Forge
from builder.intake.events import ZERO_SHA, Ignored, PushEvent
from builder.forges.pull_requests import ignored_action, request_event, request_number
from builder.forges.status_http import CommitStatus, StatusTarget, classify, split_repository, unreachable
from builder.forges.request import (
    HookInfo,
    clean_text,
    commit_id,
    dig,
    header,
    load_json,
    previous_commit,
    read_ref,
    shown,
    touched_files,
)

NAME = "gitlab"
# X-Gitlab-Event values that carry a push, and the body's object_kind for each.
PUSH_EVENTS = {"Push Hook": "push", "Tag Push Hook": "tag_push"}
# System hooks send push payloads (same object_kind) under this header value.
SYSTEM_HOOK = "System Hook"
MERGE_REQUEST_HOOK = "Merge Request Hook"
# Merge request actions built; "update" only with new commits (``oldrev`` set).
MERGE_REQUEST_ACTIONS = ("open", "update", "reopen")


def describe(headers: Mapping[str, str], body: bytes) -> HookInfo:
    payload = load_json(body)
    delivery = _delivery_id(headers)
    repository = dig(payload, "project", "path_with_namespace")
    return HookInfo(
        event=_event(headers, payload),
        delivery_id=delivery,
        repository=repository if isinstance(repository, str) else None,
        dedupe_key=_dedupe_key(headers, payload),
    )


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> None:
    token = header(headers, "X-Gitlab-Token")
    if not token:
        raise BadSignature("missing X-Gitlab-Token header")
    if not hmac.compare_digest(token.encode(), secret.encode()):
        raise BadSignature("token does not match the trigger's secret")


def parse(headers: Mapping[str, str], body: bytes) -> tuple[PushEvent, ...]:
    payload = load_json(body)
    event = _event(headers, payload)
    if event == MERGE_REQUEST_HOOK:
        return _merge_request(payload)
    if event not in PUSH_EVENTS:
        raise Ignored(f"event {shown(event)} is recorded but not built")
    ref, ref_type, ref_name = read_ref(payload.get("ref"))
    # checkout_sha is the commit (for an annotated tag ``after`` is the tag object).
    sent = payload.get("checkout_sha")
    if payload.get("after") == ZERO_SHA or not sent:
        raise Ignored(f"{ref_type} {shown(ref_name)} was deleted")
    commit = commit_id(sent)
    if commit is None or commit == ZERO_SHA:
        raise Ignored(f"head commit {shown(sent)} is not a commit id")
    head = _head_commit(payload, commit)
    return (
        PushEvent(
            provider=NAME,
            repository=clean_text(dig(payload, "project", "path_with_namespace")) or "",
            ref=ref,
            ref_type=ref_type,
            ref_name=ref_name,
            commit=commit,
            author=_author(head, payload),
            message=clean_text(head.get("message")),
            changed_files=_changed_files(payload),
            before=previous_commit(payload.get("before")),
        ),
    )


def _event(headers: Mapping[str, str], payload: dict[str, Any]) -> str | None:
    """The X-Gitlab-Event value; a system hook or a missing header falls back to object_kind."""
    event = header(headers, "X-Gitlab-Event")
    if event is None or event == SYSTEM_HOOK:
        kind = payload.get("object_kind")
        for name, object_kind in PUSH_EVENTS.items():
            if kind == object_kind:
                return name
        if kind == "merge_request":
            return MERGE_REQUEST_HOOK
    return event


def _merge_request(payload: dict[str, Any]) -> tuple[PushEvent, ...]:
    attributes = payload.get("object_attributes") if isinstance(payload.get("object_attributes"), dict) else {}
    action, number = attributes.get("action"), attributes.get("iid")
    if action == "update" and not attributes.get("oldrev"):
        action = "update without new commits"
    if action not in MERGE_REQUEST_ACTIONS:
        raise ignored_action(number, action, ("open", "update with new commits", "reopen"))
    number = request_number(number)
    source, target = attributes.get("source_project_id"), attributes.get("target_project_id")
    last_commit = attributes.get("last_commit") if isinstance(attributes.get("last_commit"), dict) else {}
    return request_event(
        provider=NAME,
        repository=dig(payload, "project", "path_with_namespace"),
        number=number,
        request_ref=f"refs/merge-requests/{number}/head",
        head_branch=attributes.get("source_branch"),
        base_branch=attributes.get("target_branch"),
        commit=last_commit.get("id"),
        from_fork=source is None or source != target,
        before=attributes.get("oldrev"),
        author=dig(payload, "user", "username") or dig(last_commit, "author", "name"),
        message=last_commit.get("message") or attributes.get("title"),
    )


def _delivery_id(headers: Mapping[str, str]) -> str | None:
    # Idempotency-Key (GitLab 17.4+) identifies one hook's delivery and stays the
    # same across retries, which is what a delivery id should be. X-Gitlab-Webhook-UUID
    # names the webhook, not the delivery, so it is never used. X-Gitlab-Event-UUID is
    # the fallback on older versions.
    return header(headers, "Idempotency-Key") or header(headers, "X-Gitlab-Event-UUID")


def _dedupe_key(headers: Mapping[str, str], payload: dict[str, Any]) -> str | None:
    key = header(headers, "Idempotency-Key")
    if key:
        return f"{NAME}:{key}"
    event_uuid = header(headers, "X-Gitlab-Event-UUID")
    if not event_uuid:
        return None
    # X-Gitlab-Event-UUID is GitLab's recursion-detection id: it is shared by every
    # hook fired while handling one request or job, so one ``git push`` of several
    # refs can produce several Push Hooks carrying the same value. Add the ref so
    # those are not collapsed into one.
    ref = payload.get("ref")
    return f"{NAME}:{event_uuid}:{ref}" if isinstance(ref, str) else f"{NAME}:{event_uuid}"


def _head_commit(payload: dict[str, Any], commit: str) -> dict[str, Any]:
    commits = payload.get("commits")
    if isinstance(commits, list):
        for item in commits:
            if isinstance(item, dict) and commit_id(item.get("id")) == commit:
                return item
    return {}


def _author(head: dict[str, Any], payload: dict[str, Any]) -> str | None:
    name = dig(head, "author", "name") or payload.get("user_username") or payload.get("user_name")
    return clean_text(name, 255)


def _changed_files(payload: dict[str, Any]) -> tuple[str, ...] | None:
    """Files touched by the push, or None when the payload's list is incomplete.

    GitLab caps ``commits`` (20 by default) while ``total_commits_count`` keeps
    the real count; a new ref (``before`` all zeros) lists commits relative to
    nothing useful, so its files are unknown too.
    """
    commits = payload.get("commits")
    if payload.get("before") == ZERO_SHA or not isinstance(commits, list) or not commits:
        return None
    if payload.get("total_commits_count") != len(commits):
        return None
    return touched_files(commits)


class GitLabForge(Forge):
    name = NAME
    display_name = "GitLab"
    signature_header = "X-Gitlab-Token (GitLab)"
    repository_hint = "GitLab: group/subgroup/name"
    default_api_url = "https://gitlab.com"
    commit_path = "/-/commit/{sha}"
    secret_headers = ("X-Gitlab-Token",)
    status_words = {"pending": "pending", "running": "running", "success": "success",
                    "failure": "failed", "cancelled": "canceled"}
    setup_steps = (
        "Open the project on GitLab: Settings → Webhooks → Add new webhook.",
        "URL: the webhook URL below.",
        "Secret token: the secret below.",
        "Trigger: “Push events” (all branches) and “Tag push events”.",
        "Add webhook; “Test → Push events” sends one to try it.",
    )
    describe = staticmethod(describe)
    verify = staticmethod(verify)
    parse = staticmethod(parse)

    def send_status(self, target: StatusTarget, status: CommitStatus, state: str, timeout: float) -> None:
        send_status(target, status, state, timeout)


# --- commit status, through python-gitlab -------------------------------------

def send_status(target: StatusTarget, status: CommitStatus, state: str, timeout: float) -> None:
    split_repository(target, parts=None)
    client = python_gitlab.Gitlab(target.api_url.rstrip("/"), private_token=target.token, timeout=timeout)
    try:
        project = client.projects.get(target.repository, lazy=True)
        project.commits.get(status.sha, lazy=True).statuses.create(
            {"state": state, "target_url": status.target_url,
             "description": status.description, "name": status.context},
            obey_rate_limit=False,  # a 429 is a TransientError for our caller to retry
            retry_transient_errors=False,
        )
    except python_gitlab.exceptions.GitlabError as exc:
        raise classify(target, exc.response_code, str(exc.error_message)) from None
    except requests.RequestException as exc:
        raise unreachable(target, exc) from None
    finally:
        client.session.close()
