"""Bitbucket Cloud and Bitbucket Data Center (Server) webhooks, told apart by event key.

Cloud sends ``X-Event-Key: repo:push``, ``X-Request-UUID``, ``X-Hook-UUID`` and
``X-Attempt-Number``; Data Center sends ``X-Event-Key: repo:refs_changed`` and
``X-Request-Id``. Both sign with ``X-Hub-Signature: sha256=<hex HMAC-SHA256 of
the raw body>`` when a secret is set. Neither payload lists changed files.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from builder.forges.base import Forge
from builder.forges.web_links import web_location
from builder.intake.events import ZERO_SHA, Ignored, PushEvent
from builder.forges.pull_requests import ignored_action, request_event, request_number
from builder.forges.status_http import CommitStatus, StatusTarget, post_status, quoted, split_repository
from builder.forges.request import (
    HookInfo,
    clean_text,
    commit_id,
    dig,
    header,
    load_json,
    previous_commit,
    read_ref,
    require_hmac_sha256,
    shown,
)

NAME = "bitbucket"
CLOUD_PUSH = "repo:push"
SERVER_PUSH = "repo:refs_changed"
# Data Center's "Test connection" button.
PING = "diagnostics:ping"
CLOUD_REF_PREFIXES = {"branch": "refs/heads/", "tag": "refs/tags/"}
SERVER_BUILT_CHANGES = ("ADD", "UPDATE")
# Pull request event keys, by prefix, and the ones that build the request's head.
CLOUD_PULL_REQUEST, SERVER_PULL_REQUEST = "pullrequest:", "pr:"
CLOUD_PULL_REQUEST_BUILT = ("pullrequest:created", "pullrequest:updated")
SERVER_PULL_REQUEST_BUILT = ("pr:opened", "pr:from_ref_updated")
# Commit statuses: Data Center's build-status 1.0 resource takes only INPROGRESS, SUCCESSFUL
# and FAILED (STOPPED is Cloud's); its status key stays "bitbucket-server".
DATA_CENTER_STATUS = "bitbucket-server"
CLOUD_STATUS_WORDS = {"pending": "INPROGRESS", "running": "INPROGRESS", "success": "SUCCESSFUL",
                      "failure": "FAILED", "cancelled": "STOPPED"}
DATA_CENTER_STATUS_WORDS = {**CLOUD_STATUS_WORDS, "cancelled": "FAILED"}
# "Jane Doe <jane@example.com>" -> "Jane Doe"
_EMAIL_SUFFIX = re.compile(r"\s*<[^<>]*>\s*$")


def describe(headers: Mapping[str, str], body: bytes) -> HookInfo:
    payload = load_json(body)
    delivery = header(headers, "X-Request-UUID") or header(headers, "X-Request-Id")
    return HookInfo(
        event=header(headers, "X-Event-Key"),
        delivery_id=delivery,
        repository=_repository(payload),
        dedupe_key=f"{NAME}:{delivery}" if delivery else None,
    )


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> None:
    require_hmac_sha256(body, secret, header(headers, "X-Hub-Signature"), prefix="sha256=")


def parse(headers: Mapping[str, str], body: bytes) -> tuple[PushEvent, ...]:
    event = header(headers, "X-Event-Key")
    if event == PING:
        raise Ignored("ping", status=200)
    if isinstance(event, str) and event.startswith(CLOUD_PULL_REQUEST):
        return _cloud_pull_request(event, load_json(body))
    if isinstance(event, str) and event.startswith(SERVER_PULL_REQUEST):
        return _server_pull_request(event, load_json(body))
    if event not in (CLOUD_PUSH, SERVER_PUSH):
        raise Ignored(f"event {shown(event)} is recorded but not built")
    payload = load_json(body)
    repository = _repository(payload) or ""
    if is_cloud(event=event):
        changes = dig(payload, "push", "changes")
        parse_change = _cloud_change
    else:
        changes = payload.get("changes")
        parse_change = _server_change
    if not isinstance(changes, list) or not changes:
        raise Ignored("push without changes")
    built: list[PushEvent] = []
    deleted: list[str] = []
    for change in changes:
        if not isinstance(change, dict):
            continue
        result = parse_change(change, repository, payload)
        if isinstance(result, PushEvent):
            built.append(result)
        elif result:
            deleted.append(result)
    if built:
        return tuple(built)
    if deleted and len(deleted) == len(changes):
        verb = "was" if len(deleted) == 1 else "were"
        raise Ignored(f"{', '.join(deleted)} {verb} deleted")
    raise Ignored("push without a branch or tag to build")


def _cloud_change(change: dict[str, Any], repository: str, payload: dict[str, Any]) -> PushEvent | str | None:
    """A PushEvent, a description of a deleted ref, or None for anything else."""
    new = change.get("new")
    if new is None:
        old = change.get("old")
        if isinstance(old, dict) and _cloud_ref_type(old):
            return f"{old['type']} {shown(old.get('name'))}"
        return "a ref"
    ref_type = _cloud_ref_type(new)
    if ref_type is None:
        return None
    name, commit = new.get("name"), commit_id(dig(new, "target", "hash"))
    if not isinstance(name, str) or commit is None or commit == ZERO_SHA:
        return None
    try:
        ref, ref_type, name = read_ref(CLOUD_REF_PREFIXES[ref_type] + name)
    except Ignored:
        return None
    target = new["target"]
    return PushEvent(
        provider=NAME,
        repository=repository,
        ref=ref,
        ref_type=ref_type,
        ref_name=name,
        commit=commit,
        author=_cloud_author(target, payload),
        message=clean_text(target.get("message")),
        before=previous_commit(dig(change, "old", "target", "hash")),
    )


def _cloud_ref_type(ref: dict[str, Any]) -> str | None:
    """``branch`` or ``tag`` when a Cloud ``new``/``old`` names one, else None."""
    kind = ref.get("type") if isinstance(ref, dict) else None
    return kind if isinstance(kind, str) and kind in CLOUD_REF_PREFIXES else None


def _server_change(change: dict[str, Any], repository: str, payload: dict[str, Any]) -> PushEvent | str | None:
    try:
        ref, ref_type, ref_name = read_ref(dig(change, "ref", "id") or change.get("refId"))
    except Ignored:
        return None
    kind = change.get("type")
    if kind == "DELETE":
        return f"{ref_type} {shown(ref_name)}"
    commit = commit_id(change.get("toHash"))
    if kind not in SERVER_BUILT_CHANGES or commit is None or commit == ZERO_SHA:
        return None
    # Data Center sends no commit details; the pusher is the best author there is.
    author = dig(payload, "actor", "displayName") or dig(payload, "actor", "name")
    return PushEvent(
        provider=NAME,
        repository=repository,
        ref=ref,
        ref_type=ref_type,
        ref_name=ref_name,
        commit=commit,
        author=clean_text(author, 255),
        before=previous_commit(change.get("fromHash")),
    )


def _cloud_pull_request(event: str, payload: dict[str, Any]) -> tuple[PushEvent, ...]:
    request = payload.get("pullrequest") if isinstance(payload.get("pullrequest"), dict) else {}
    if event not in CLOUD_PULL_REQUEST_BUILT:
        raise ignored_action(request.get("id"), event, CLOUD_PULL_REQUEST_BUILT)
    number = request_number(request.get("id"))
    source = dig(request, "source", "repository", "full_name")
    if not source or source != dig(request, "destination", "repository", "full_name"):
        raise Ignored(f"pull request #{number} comes from the fork {shown(source)}: Bitbucket Cloud has no "
                      "pull request refs, so its head cannot be fetched from the base repository")
    branch = dig(request, "source", "branch", "name")
    return request_event(
        provider=NAME,
        repository=_repository(payload),
        number=number,
        # Cloud keeps no request refs: a same-repository request's head is its source branch.
        request_ref=f"refs/heads/{branch}",
        head_branch=branch,
        base_branch=dig(request, "destination", "branch", "name"),
        commit=dig(request, "source", "commit", "hash"),
        from_fork=False,
        author=dig(request, "author", "display_name") or dig(payload, "actor", "display_name"),
        message=request.get("title"),
        abbreviated=True,  # Cloud sends the first 12 hex digits
    )


def _server_pull_request(event: str, payload: dict[str, Any]) -> tuple[PushEvent, ...]:
    request = payload.get("pullRequest") if isinstance(payload.get("pullRequest"), dict) else {}
    if event not in SERVER_PULL_REQUEST_BUILT:
        raise ignored_action(request.get("id"), event, SERVER_PULL_REQUEST_BUILT)
    number = request_number(request.get("id"))
    head, base = request.get("fromRef") or {}, request.get("toRef") or {}
    return request_event(
        provider=NAME,
        repository=_repository(payload),
        number=number,
        request_ref=f"refs/pull-requests/{number}/from",
        head_branch=dig(head, "displayId") or dig(head, "id"),
        base_branch=dig(base, "displayId") or dig(base, "id"),
        commit=dig(head, "latestCommit"),
        from_fork=_server_repository(dig(head, "repository")) != _server_repository(dig(base, "repository")),
        before=payload.get("previousFromHash"),
        author=dig(payload, "actor", "displayName") or dig(request, "author", "user", "displayName"),
        message=request.get("title"),
    )


def _cloud_author(target: dict[str, Any], payload: dict[str, Any]) -> str | None:
    name = dig(target, "author", "user", "display_name")
    if not name:
        raw = dig(target, "author", "raw")
        name = _EMAIL_SUFFIX.sub("", raw) if isinstance(raw, str) else None
    if not name:
        name = dig(payload, "actor", "display_name")
    return clean_text(name, 255) or None


def _repository(payload: dict[str, Any]) -> str | None:
    """Cloud: ``workspace/slug``; Data Center: ``PROJECTKEY/slug``, spelled as sent."""
    full_name = dig(payload, "repository", "full_name")
    if isinstance(full_name, str) and full_name:
        return full_name
    # Data Center pull request events name the repository only in the request's target ref.
    return _server_repository(payload.get("repository") or dig(payload, "pullRequest", "toRef", "repository"))


def _server_repository(repository: Any) -> str | None:
    """``PROJECTKEY/slug`` of a Data Center repository object."""
    key, slug = dig(repository, "project", "key"), dig(repository, "slug")
    if isinstance(key, str) and key and isinstance(slug, str) and slug:
        return f"{key}/{slug}"
    return None


def is_cloud(event: str | None = None, api_url: str | None = None) -> bool:
    """THE rule telling Bitbucket Cloud from Bitbucket Data Center (one public name, two hosts).

    Cloud is bitbucket.org: its deliveries' event keys are ``repo:push`` and
    ``pullrequest:*``, and its API is api.bitbucket.org (the default when a
    trigger names none). Anything else is a Data Center server: event keys
    ``repo:refs_changed`` and ``pr:*``, an API on the server's own host.
    Pass whichever is known: the event key of a delivery or the trigger's API URL.
    """
    if event is not None:
        return event == CLOUD_PUSH or event.startswith(CLOUD_PULL_REQUEST)
    return api_url is None or "api.bitbucket.org" in api_url


class BitbucketForge(Forge):
    name = NAME
    display_name = "Bitbucket"
    signature_header = "X-Hub-Signature (Bitbucket)"
    repository_hint = "Bitbucket Data Center: PROJECT/slug"
    default_api_url = "https://api.bitbucket.org/2.0"
    commit_path = "/commits/{sha}"
    secret_headers = ("X-Hub-Signature",)
    status_keys = (NAME, DATA_CENTER_STATUS)
    setup_steps = (
        "Bitbucket Cloud: Repository settings → Webhooks → Add webhook. "
        "Bitbucket Data Center: Repository settings → Webhooks → Create webhook.",
        "URL: the webhook URL below.",
        "Secret: the secret below.",
        "Triggers: “Repository push” (Cloud) or Repository → “Push” (Data Center). Save.",
    )
    describe = staticmethod(describe)
    verify = staticmethod(verify)
    parse = staticmethod(parse)

    def repository_url(self, clone_url: str) -> str | None:
        """Data Center clones from ``/scm/PROJECT/repo`` and shows it at ``/projects/PROJECT/repos/repo``."""
        location = web_location(clone_url)
        if location is None or location.host == "bitbucket.org":
            return location.url if location else None
        scm = re.fullmatch(r"(?:/[^/]+)*?/scm/([^/]+)/([^/]+)", location.path)
        if not scm:
            return None
        return f"{location.scheme}://{location.host}/projects/{scm[1]}/repos/{scm[2]}"

    def status_key(self, api_url: str) -> str:
        return NAME if is_cloud(api_url=api_url) else DATA_CENTER_STATUS

    def status_words_for(self, key: str) -> dict[str, str] | None:
        return {NAME: CLOUD_STATUS_WORDS, DATA_CENTER_STATUS: DATA_CENTER_STATUS_WORDS}.get(key)

    def send_status(self, target: StatusTarget, status: CommitStatus, state: str, timeout: float) -> None:
        if target.provider == DATA_CENTER_STATUS:
            split_repository(target, parts=2)  # PROJECT/slug: checked, though this resource keys on the commit alone
            url = f"{target.api_url.rstrip('/')}/rest/build-status/1.0/commits/{quoted(status.sha)}"
        else:
            workspace, slug = split_repository(target, parts=2)
            url = (f"{target.api_url.rstrip('/')}/repositories/{quoted(workspace)}/{quoted(slug)}"
                   f"/commit/{quoted(status.sha)}/statuses/build")
        # The key identifies the status on the commit: a later post with the same key replaces it.
        body = {"state": state, "key": status.context, "name": status.context,
                "url": status.target_url, "description": status.description}
        post_status(target, url, f"Bearer {target.token}", body, timeout)
