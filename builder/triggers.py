"""Creating, finding and describing triggers and their rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from builder.clone import GitAuth
from builder.commit_status import StatusTarget
from builder.errors import InputError, NotFound
from builder.models import Trigger, TriggerRule
from builder.providers import PROVIDERS
from builder.rules import RuleSpec
from builder.secrets import SecretBox
from builder.tags import image_repository

_STRINGS = ("provider", "repository", "clone_url", "secret", "image", "dockerfile", "context",
            "default_branch", "api_url", "status_token", "clone_username", "clone_token", "ssh_key",
            "ssh_known_hosts")
_REQUIRED = ("provider", "repository", "clone_url", "secret", "image")


@dataclass(frozen=True)
class TriggerSpec:
    provider: str
    repository: str
    clone_url: str
    secret: str = field(repr=False)
    image: str
    dockerfile: str = "Dockerfile"  # used by the default rules when no rules are given
    context: str = "."
    default_branch: str = "main"
    rules: tuple[RuleSpec, ...] = ()
    supersede: bool = True
    api_url: str | None = None
    status_token: str | None = field(default=None, repr=False)
    clone_username: str | None = None
    clone_token: str | None = field(default=None, repr=False)
    ssh_key: str | None = field(default=None, repr=False)
    ssh_known_hosts: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> "TriggerSpec":
        if not isinstance(data, dict):
            raise InputError("expected a JSON object")
        missing = [key for key in _REQUIRED if not isinstance(data.get(key), str) or not data[key]]
        if missing:
            raise InputError(f"missing or empty fields: {', '.join(missing)}")
        bad = [key for key in _STRINGS if data.get(key) is not None and not isinstance(data[key], str)]
        if bad:
            raise InputError(f"fields must be strings: {', '.join(bad)}")
        unknown = sorted(set(data) - set(_STRINGS) - {"rules", "supersede"})
        if unknown:
            raise InputError(f"unknown fields: {', '.join(unknown)}")
        rules = data.get("rules") or []
        if not isinstance(rules, list):
            raise InputError("rules must be a list")
        if not isinstance(data.get("supersede", True), bool):
            raise InputError("supersede must be true or false")
        return cls(
            **{key: data[key] for key in _STRINGS if data.get(key) is not None},
            rules=tuple(RuleSpec.from_json(rule) for rule in rules),
            supersede=data.get("supersede", True),
        )

    def effective_rules(self) -> tuple[RuleSpec, ...]:
        if self.rules:
            return self.rules
        return (
            RuleSpec.default("branch", self.dockerfile, self.context),
            RuleSpec.default("tag", self.dockerfile, self.context),
        )


def _inside_repository(path: str, what: str) -> str:
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts:
        raise InputError(f"{what} {path!r} must be a relative path inside the repository")
    return str(pure)


def create_trigger(session: Session, box: SecretBox, spec: TriggerSpec, registry: str) -> Trigger:
    if spec.provider not in PROVIDERS:
        raise InputError(f"unknown provider {spec.provider!r}; known: {', '.join(sorted(PROVIDERS))}")
    if "/" not in spec.repository.strip("/"):
        raise InputError("repository must be OWNER/NAME as the Git host names it")
    if spec.ssh_key and not spec.ssh_known_hosts:
        raise InputError("an SSH deploy key needs known hosts (ssh-keyscan HOST), so host keys are checked")
    image_repository(spec.image, registry)  # validates the name
    trigger = Trigger(
        provider=spec.provider,
        repository=spec.repository.strip("/"),
        clone_url=spec.clone_url,
        secret_enc=box.seal(spec.secret),
        image=spec.image,
        default_branch=spec.default_branch,
        supersede=spec.supersede,
        api_url=spec.api_url,
        status_token_enc=box.seal(spec.status_token) if spec.status_token else None,
        clone_username=spec.clone_username,
        clone_token_enc=box.seal(spec.clone_token) if spec.clone_token else None,
        ssh_key_enc=box.seal(spec.ssh_key) if spec.ssh_key else None,
        ssh_known_hosts=spec.ssh_known_hosts,
    )
    for position, rule in enumerate(spec.effective_rules()):
        trigger.rules.append(
            TriggerRule(
                position=position,
                source=rule.source,
                match=rule.match,
                pattern=rule.pattern,
                dockerfile=_inside_repository(rule.dockerfile, "dockerfile"),
                context=_inside_repository(rule.context, "context"),
                build_args=dict(rule.build_args),
                target=rule.target,
                tags=list(rule.tags),
                included_files=list(rule.included_files),
                ignored_files=list(rule.ignored_files),
            )
        )
    session.add(trigger)
    session.flush()
    return trigger


def rule_spec(rule: TriggerRule) -> RuleSpec:
    return RuleSpec(
        source=rule.source,  # type: ignore[arg-type]
        match=rule.match,
        pattern=rule.pattern,
        dockerfile=rule.dockerfile,
        context=rule.context,
        build_args=dict(rule.build_args),
        target=rule.target,
        tags=tuple(rule.tags),
        included_files=tuple(rule.included_files),
        ignored_files=tuple(rule.ignored_files),
    )


DEFAULT_API_URLS = {
    "github": "https://api.github.com",
    "gitlab": "https://gitlab.com",
    "bitbucket": "https://api.bitbucket.org/2.0",
}


def clone_auth(trigger: Trigger, box: SecretBox) -> GitAuth | None:
    """The credentials to fetch a private repository with, if the trigger has any."""
    if trigger.ssh_key_enc:
        return GitAuth(ssh_private_key=box.open(trigger.ssh_key_enc), ssh_known_hosts=trigger.ssh_known_hosts)
    if trigger.clone_token_enc:
        return GitAuth(token=box.open(trigger.clone_token_enc),
                       username=trigger.clone_username or "x-access-token")
    return None


def status_target(trigger: Trigger, box: SecretBox) -> StatusTarget | None:
    """Where to report commit statuses, if the trigger has a token for it.

    Bitbucket Cloud is told from Data Center by the API URL: Cloud's is
    api.bitbucket.org (the default); any other is a Data Center server.
    Gitea has no default: its API URL is derived from the clone URL's host.
    """
    if not trigger.status_token_enc:
        return None
    api_url = trigger.api_url or DEFAULT_API_URLS.get(trigger.provider)
    if api_url is None:  # gitea: https://host/owner/repo.git -> https://host/api/v1
        parts = urlsplit(trigger.clone_url)
        api_url = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/api/v1"
    provider = trigger.provider
    if provider == "bitbucket" and "api.bitbucket.org" not in api_url:
        provider = "bitbucket-server"
    return StatusTarget(provider=provider, api_url=api_url.rstrip("/"), repository=trigger.repository,
                        token=box.open(trigger.status_token_enc))


def find_triggers(session: Session, provider: str, repository: str) -> list[Trigger]:
    query = (
        select(Trigger)
        .where(Trigger.provider == provider, func.lower(Trigger.repository) == repository.lower())
        .order_by(Trigger.id)
    )
    return list(session.scalars(query))


def get_trigger(session: Session, trigger_id: int) -> Trigger:
    trigger = session.get(Trigger, trigger_id)
    if trigger is None:
        raise NotFound(f"trigger {trigger_id} not found")
    return trigger


def webhook_url(public_url: str, provider: str) -> str:
    return f"{public_url.rstrip('/')}/hooks/{provider}"


def trigger_to_dict(trigger: Trigger, public_url: str) -> dict[str, Any]:
    """What the API and CLI show: no secret, only whether one is set."""
    return {
        "id": trigger.id,
        "provider": trigger.provider,
        "repository": trigger.repository,
        "clone_url": trigger.clone_url,
        "image": trigger.image,
        "default_branch": trigger.default_branch,
        "enabled": trigger.enabled,
        "supersede": trigger.supersede,
        "rules": [rule_spec(rule).as_json() for rule in trigger.rules],
        "api_url": trigger.api_url,
        "commit_status": trigger.status_token_enc is not None,
        "clone_auth": "ssh-key" if trigger.ssh_key_enc else "token" if trigger.clone_token_enc else None,
        "webhook_url": webhook_url(public_url, trigger.provider),
        "created_at": trigger.created_at.isoformat(),
    }


# --- changes from the pages: update, delete ---------------------------------------------------

import re  # noqa: E402

from sqlalchemy import delete  # noqa: E402

from builder.errors import Conflict  # noqa: E402

_BRANCH_FORBIDDEN = re.compile(r"[\s~^:?*\[\\]|\.\.|@\{|^/|/$|\.lock$|^-")


def update_trigger(session: Session, trigger: Trigger, registry: str, *, image: str | None = None,
                   default_branch: str | None = None, enabled: bool | None = None) -> Trigger:
    """Change what the pages let an admin change: the image, the default branch, enabled."""
    if image is not None:
        image = image.strip()
        image_repository(image, registry)  # validates the name
        trigger.image = image
    if default_branch is not None:
        default_branch = default_branch.strip()
        if not default_branch or _BRANCH_FORBIDDEN.search(default_branch):
            raise InputError(f"default branch {default_branch!r} is not a valid branch name")
        trigger.default_branch = default_branch
    if enabled is not None:
        trigger.enabled = enabled
    session.flush()
    return trigger


def delete_trigger(session: Session, trigger_id: int) -> None:
    """Delete a trigger and its rules; its builds and deliveries stay (their trigger becomes null).

    Refused while one of its builds is queued or running.
    """
    from builder.models import Build

    get_trigger(session, trigger_id)
    running = session.scalar(select(Build.id).where(
        Build.trigger_id == trigger_id, Build.state.in_(("queued", "cloning", "building", "pushing"))).limit(1))
    if running is not None:
        raise Conflict(f"build {running} of this trigger is still queued or running: wait for it or cancel it")
    session.execute(delete(Trigger).where(Trigger.id == trigger_id))
