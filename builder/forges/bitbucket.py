"""Bitbucket: one public provider name ("bitbucket"), two hosts, told apart by ``is_cloud``.

The payload and status code of each lives in ``bitbucket_cloud`` / ``bitbucket_datacenter``.

Cloud sends ``X-Event-Key: repo:push``, ``X-Request-UUID``, ``X-Hook-UUID`` and
``X-Attempt-Number``; Data Center sends ``X-Event-Key: repo:refs_changed`` and
``X-Request-Id``. Both sign with ``X-Hub-Signature: sha256=<hex HMAC-SHA256 of
the raw body>`` when a secret is set. Neither payload lists changed files.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from builder.forges import bitbucket_cloud as cloud
from builder.forges import bitbucket_datacenter as datacenter
from builder.forges.base import Forge
from builder.forges.request import HookInfo, dig, header, load_json, require_hmac_sha256, shown
from builder.forges.status_http import CommitStatus, StatusTarget
from builder.forges.web_links import web_location
from builder.intake.events import Ignored, PushEvent

NAME = "bitbucket"
# Data Center's "Test connection" button.
PING = "diagnostics:ping"


def is_cloud(event: str | None = None, api_url: str | None = None) -> bool:
    """THE rule telling Bitbucket Cloud from Bitbucket Data Center (one public name, two hosts).

    Cloud is bitbucket.org: its deliveries' event keys are ``repo:push`` and
    ``pullrequest:*``, and its API is api.bitbucket.org (the default when a
    trigger names none). Anything else is a Data Center server: event keys
    ``repo:refs_changed`` and ``pr:*``, an API on the server's own host.
    Pass whichever is known: the event key of a delivery or the trigger's API URL.
    """
    if event is not None:
        return event == cloud.PUSH or event.startswith(cloud.PULL_REQUEST)
    return api_url is None or "api.bitbucket.org" in api_url


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
    if isinstance(event, str) and event.startswith((cloud.PULL_REQUEST, datacenter.PULL_REQUEST)):
        payload = load_json(body)
        host = cloud if is_cloud(event=event) else datacenter
        return host.pull_request(event, payload, _repository(payload))
    if event not in (cloud.PUSH, datacenter.PUSH):
        raise Ignored(f"event {shown(event)} is recorded but not built")
    payload = load_json(body)
    repository = _repository(payload) or ""
    host = cloud if is_cloud(event=event) else datacenter
    changes = host.push_changes(payload)
    parse_change = host.push_change
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


def _repository(payload: dict[str, Any]) -> str | None:
    """Cloud: ``workspace/slug``; Data Center: ``PROJECTKEY/slug``, spelled as sent."""
    full_name = dig(payload, "repository", "full_name")
    if isinstance(full_name, str) and full_name:
        return full_name
    # Data Center pull request events name the repository only in the request's target ref.
    return datacenter.repository_key(payload.get("repository") or dig(payload, "pullRequest", "toRef", "repository"))


class BitbucketForge(Forge):
    name = NAME
    display_name = "Bitbucket"
    signature_header = "X-Hub-Signature (Bitbucket)"
    repository_hint = "Bitbucket Data Center: PROJECT/slug"
    default_api_url = "https://api.bitbucket.org/2.0"
    commit_path = "/commits/{sha}"
    secret_headers = ("X-Hub-Signature",)
    status_keys = (NAME, datacenter.STATUS_KEY)
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
        return NAME if is_cloud(api_url=api_url) else datacenter.STATUS_KEY

    def status_words_for(self, key: str) -> Mapping[str, str] | None:
        return {NAME: cloud.STATUS_WORDS, datacenter.STATUS_KEY: datacenter.STATUS_WORDS}.get(key)

    def send_status(self, target: StatusTarget, status: CommitStatus, state: str, timeout: float) -> None:
        host = datacenter if target.provider == datacenter.STATUS_KEY else cloud
        host.send_status(target, status, state, timeout)
