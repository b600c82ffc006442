"""Creating, editing, deleting and describing triggers and their rules.

What the webhook intake reads of them (fast, plain values) is in ``builder/triggers/lookup.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from builder.builds.run.secret_args import seal_secret_build_args, secret_build_arg_names
from builder.triggers.git_access import GitAuth, redact_url
from builder.triggers.clone_urls import check_clone_url
from builder.notify.commit_status import StatusTarget
from builder.errors import Conflict, InputError, NotFound
from builder.builds.fair_share import FORM_REFUSAL, check_max_concurrent
from builder.triggers.schedules import check_schedule, next_due
from builder.db.models import Build, Trigger, TriggerRule, utcnow
from builder.forges.base import CLONE_USERNAME
from builder.forges.registry import forge_for, provider_names
from builder.triggers.rules import RuleSpec, check_secret_build_args, rule_at, rules_from_json
from builder.triggers.lookup import rule_spec
from builder.secrets import SecretBox
from builder.triggers.tags import image_repository

_STRINGS = ("provider", "repository", "clone_url", "secret", "image", "dockerfile", "context",
            "default_branch", "api_url", "status_token", "clone_username", "clone_token", "ssh_key",
            "ssh_known_hosts")
_REQUIRED = ("provider", "repository", "clone_url", "secret", "image")
_SEALED = {"secret": "secret_enc", "status_token": "status_token_enc", "clone_token": "clone_token_enc",
           "ssh_key": "ssh_key_enc"}  # write-only: stored encrypted, never shown
BUILD_TIMEOUT_MAX = 7 * 24 * 3600
_TEAM_FIELDS = ("max_concurrent", "schedule")  # builder/builds/fair_share.py, builder/triggers/schedules.py
_FLAGS = ("supersede", "enabled", "public_badge")  # true or false, in an edit
_BRANCH_FORBIDDEN = re.compile(r"[\s~^:?*\[\\]|\.\.|@\{|^/|/$|\.lock$|^-")


def check_build_timeout(value: Any) -> int | None:
    """A trigger's build timeout: whole seconds, 1 to 7 days, or None for BUILDHOOK_BUILD_TIMEOUT."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError("build_timeout must be a whole number of seconds, or null for the default")
    if not 0 < value <= BUILD_TIMEOUT_MAX:
        raise InputError(f"build_timeout must be between 1 and {BUILD_TIMEOUT_MAX} seconds (7 days)")
    return value


def _whole_number_text(text: str | None, refusal: str) -> int | None:
    """A form's whole-number field: None when empty."""
    text = (text or "").strip()
    if not text:
        return None
    if not re.fullmatch(r"-?[0-9]{1,18}", text):
        raise InputError(refusal)
    return int(text)


def build_timeout_from_text(text: str | None) -> int | None:
    """A form's build timeout field: empty for the default, else whole seconds."""
    value = _whole_number_text(text, "build timeout must be a whole number of seconds (empty: the default)")
    return None if value is None else check_build_timeout(value)


def max_concurrent_from_text(text: str | None) -> int | None:
    """A form's max_concurrent field: empty for no limit of the trigger's own, else a whole number."""
    value = _whole_number_text(text, FORM_REFUSAL)
    return None if value is None else check_max_concurrent(value, FORM_REFUSAL)


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
    build_timeout: int | None = None  # seconds; None: BUILDHOOK_BUILD_TIMEOUT
    max_concurrent: int | None = None  # builds running at once; None: no limit (builder/builds/fair_share.py)
    schedule: str | None = None  # cron, UTC: rebuild the default branch's tip (builder/triggers/schedules.py)
    public_badge: bool = False  # /badge/<id>.svg answers without sign-in (builder/builds/badges.py)

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
        unknown = sorted(set(data) - set(_STRINGS) - {"rules", "supersede", "build_timeout", "public_badge",
                                                      *_TEAM_FIELDS})
        if unknown:
            raise InputError(f"unknown fields: {', '.join(unknown)}")
        rules = data.get("rules") or []
        if not isinstance(rules, list):
            raise InputError("rules must be a list")
        flags = [key for key in ("supersede", "public_badge") if not isinstance(data.get(key, True), bool)]
        if flags:
            raise InputError(f"fields must be true or false: {', '.join(flags)}")
        return cls(
            **{key: data[key] for key in _STRINGS if data.get(key) is not None},
            rules=rules_from_json(rules),
            supersede=data.get("supersede", True),
            public_badge=data.get("public_badge", False),
            build_timeout=check_build_timeout(data.get("build_timeout")),
            max_concurrent=check_max_concurrent(data.get("max_concurrent")),
            schedule=check_schedule(data.get("schedule")),
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


def _check_target(provider: str, repository: str, image: str, registry: str) -> None:
    if forge_for(provider) is None:
        raise InputError(f"unknown provider {provider!r}; known: {', '.join(provider_names())}")
    if "/" not in repository.strip("/"):
        raise InputError("repository must be OWNER/NAME as the Git host names it")
    image_repository(image, registry)  # validates the name


def _check_branch(name: str) -> str:
    name = name.strip()
    if not name or _BRANCH_FORBIDDEN.search(name):
        raise InputError(f"default branch {name!r} is not a valid branch name")
    return name


def _rule_columns(rule: RuleSpec, box: SecretBox, stored: TriggerRule | None = None) -> dict[str, Any]:
    """The columns of ``rule``; ``stored`` is the rule it replaces (an edit keeps its secret build
    args unless the rule gives ``secret_build_args``)."""
    secrets: dict[str, Any] = {}
    stored_enc = stored.secret_build_args_enc if stored is not None else None
    if rule.secret_build_args is not None:
        secrets["secret_build_args_enc"] = seal_secret_build_args(box, rule.secret_build_args, stored_enc)
    elif stored_enc:
        check_secret_build_args(dict.fromkeys(secret_build_arg_names(stored_enc)), rule.build_args)
    return {
        **secrets,
        "source": rule.source,
        "match": rule.match,
        "pattern": rule.pattern,
        "dockerfile": _inside_repository(rule.dockerfile, "dockerfile"),
        "context": _inside_repository(rule.context, "context"),
        "build_args": dict(rule.build_args),
        "target": rule.target,
        "tags": list(rule.tags),
        "included_files": list(rule.included_files),
        "ignored_files": list(rule.ignored_files),
        "test": rule.test.as_json() if rule.test else None,
        "push": rule.pushes,
        "forks": rule.forks,
        "cancel_running": rule.cancel_running,
        "rebuild": rule.rebuild,
        "retention_keep": rule.retention_keep,
        "platforms": list(rule.platforms) or None,
    }


def create_trigger(session: Session, box: SecretBox, spec: TriggerSpec, registry: str, *,
                   allow_file_clones: bool = False) -> Trigger:
    """A new trigger (flushed, not committed); ``allow_file_clones``: BUILDHOOK_ALLOW_FILE_CLONES."""
    _check_target(spec.provider, spec.repository, spec.image, registry)
    check_clone_url(spec.clone_url, allow_file_clones)
    if spec.ssh_key and not spec.ssh_known_hosts:
        raise InputError("an SSH deploy key needs known hosts (ssh-keyscan HOST), so host keys are checked")
    trigger = Trigger(
        provider=spec.provider,
        repository=spec.repository.strip("/"),
        clone_url=spec.clone_url,
        secret_enc=box.seal(spec.secret),
        image=spec.image,
        default_branch=_check_branch(spec.default_branch),
        supersede=spec.supersede,
        api_url=spec.api_url,
        status_token_enc=box.seal(spec.status_token) if spec.status_token else None,
        clone_username=spec.clone_username,
        clone_token_enc=box.seal(spec.clone_token) if spec.clone_token else None,
        ssh_key_enc=box.seal(spec.ssh_key) if spec.ssh_key else None,
        ssh_known_hosts=spec.ssh_known_hosts,
        build_timeout=check_build_timeout(spec.build_timeout),
        max_concurrent=check_max_concurrent(spec.max_concurrent),
        public_badge=spec.public_badge,
    )
    _set_schedule(trigger, check_schedule(spec.schedule))
    for position, rule in enumerate(spec.effective_rules()):
        with rule_at(position):
            trigger.rules.append(TriggerRule(position=position, **_rule_columns(rule, box)))
    session.add(trigger)
    session.flush()
    return trigger


def _set_schedule(trigger: Trigger, schedule: str | None) -> None:
    """A new schedule (checked) starts counting now: its next due time is the first one from now."""
    trigger.schedule = schedule
    trigger.schedule_next_at = next_due(schedule, utcnow()) if schedule else None


def clone_auth(trigger: Trigger, box: SecretBox) -> GitAuth | None:
    """The credentials to fetch a private repository with, if the trigger has any."""
    if trigger.ssh_key_enc:
        return GitAuth(ssh_private_key=box.open(trigger.ssh_key_enc), ssh_known_hosts=trigger.ssh_known_hosts)
    if trigger.clone_token_enc:
        return GitAuth(token=box.open(trigger.clone_token_enc),
                       username=trigger.clone_username or CLONE_USERNAME)
    return None


def status_target(trigger: Trigger, box: SecretBox) -> StatusTarget | None:
    """Where to report commit statuses, if the trigger has a token for it.

    The trigger's forge gives the default API URL (or derives it from the clone
    URL) and which of its status senders serves that API.
    """
    if not trigger.status_token_enc:
        return None
    forge = forge_for(trigger.provider)
    if forge is None:  # no longer registered (made-up test forges): nowhere to report to
        return None
    api_url = forge.api_url(trigger.api_url, trigger.clone_url)
    return StatusTarget(provider=forge.status_key(api_url), api_url=api_url, repository=trigger.repository,
                        token=box.open(trigger.status_token_enc))


def get_trigger(session: Session, trigger_id: int) -> Trigger:
    trigger = session.get(Trigger, trigger_id)
    if trigger is None:
        raise NotFound(f"trigger {trigger_id} not found")
    return trigger


def webhook_url(public_url: str, provider: str) -> str:
    return f"{public_url.rstrip('/')}/hooks/{provider}"


def rule_to_dict(rule: TriggerRule) -> dict[str, Any]:
    """A rule as the API shows it: its secret build args by name only."""
    return {**rule_spec(rule).as_json(), "secret_build_args": secret_build_arg_names(rule.secret_build_args_enc),
            "test": rule.test, "platforms": rule.platforms or [],
            "rebuild": rule.rebuild or "changed",
            "retention": {"keep": rule.retention_keep} if rule.retention_keep else None}


def trigger_to_dict(trigger: Trigger, public_url: str) -> dict[str, Any]:
    """What the API and CLI show: no secret, only whether one is set; the clone URL without
    a user or password (``https://user:TOKEN@host/x.git`` is shown ``https://host/x.git``)."""
    return {
        "id": trigger.id,
        "provider": trigger.provider,
        "repository": trigger.repository,
        "clone_url": redact_url(trigger.clone_url),
        "image": trigger.image,
        "default_branch": trigger.default_branch,
        "enabled": trigger.enabled,
        "supersede": trigger.supersede,
        "rules": [rule_to_dict(rule) for rule in trigger.rules],
        "api_url": trigger.api_url,
        "commit_status": trigger.status_token_enc is not None,
        "clone_auth": "ssh-key" if trigger.ssh_key_enc else "token" if trigger.clone_token_enc else None,
        "build_timeout": trigger.build_timeout,
        "max_concurrent": trigger.max_concurrent,
        "schedule": trigger.schedule,
        "schedule_next_at": trigger.schedule_next_at.isoformat() if trigger.schedule_next_at else None,
        "public_badge": trigger.public_badge,
        "webhook_url": webhook_url(public_url, trigger.provider),
        "created_at": trigger.created_at.isoformat(),
    }


# --- changes: edit (PATCH /api/triggers/<id>, the trigger page), delete ----------------------


@dataclass(frozen=True)
class TriggerEdit:
    """What an edit changes: only the fields given; ``rules`` None keeps them, () sets the defaults."""

    fields: dict[str, Any] = field(default_factory=dict, repr=False)
    rules: tuple[RuleSpec, ...] | None = None

    @classmethod
    def from_json(cls, data: Any) -> "TriggerEdit":
        """The same fields and checks as ``TriggerSpec.from_json``, plus ``enabled``; all optional.
        ``null`` (or "") clears an optional field: a token, a key, the API URL, the build timeout."""
        if not isinstance(data, dict):
            raise InputError("expected a JSON object")
        unknown = sorted(set(data) - set(_STRINGS) - {"rules", "supersede", "enabled", "build_timeout",
                                                      "public_badge", *_TEAM_FIELDS})
        if unknown:
            raise InputError(f"unknown fields: {', '.join(unknown)}")
        empty = [key for key in (*_REQUIRED, "default_branch") if key in data and not data[key]]
        if empty:
            raise InputError(f"fields must not be empty: {', '.join(empty)}")
        bad = [key for key in _STRINGS if data.get(key) is not None and not isinstance(data[key], str)]
        if bad:
            raise InputError(f"fields must be strings: {', '.join(bad)}")
        flags = [key for key in _FLAGS if key in data and not isinstance(data[key], bool)]
        if flags:
            raise InputError(f"fields must be true or false: {', '.join(flags)}")
        fields: dict[str, Any] = {key: data[key] or None for key in _STRINGS
                                  if key in data and key not in ("dockerfile", "context")}
        fields.update({key: data[key] for key in _FLAGS if key in data})
        if "build_timeout" in data:
            fields["build_timeout"] = check_build_timeout(data["build_timeout"])
        if "max_concurrent" in data:
            fields["max_concurrent"] = check_max_concurrent(data["max_concurrent"])
        if "schedule" in data:
            fields["schedule"] = check_schedule(data["schedule"])
        if "rules" not in data:
            if "dockerfile" in data or "context" in data:
                raise InputError('dockerfile and context set the default rules: send them with "rules": [], '
                                 "or change each rule's dockerfile and context")
            return cls(fields)
        if not isinstance(data["rules"] or [], list):
            raise InputError("rules must be a list")
        defaults = TriggerSpec(provider="", repository="", clone_url="", secret="", image="",
                               dockerfile=data.get("dockerfile") or "Dockerfile", context=data.get("context") or ".")
        rules = rules_from_json(data["rules"] or []) or defaults.effective_rules()
        return cls(fields, rules)


def update_trigger(session: Session, box: SecretBox, trigger: Trigger, edit: TriggerEdit, registry: str, *,
                   allow_file_clones: bool = False) -> Trigger:
    """Apply an edit with the checks of ``create_trigger``; secrets are sealed, rules updated in place
    (a rule keeps its id, and so its builds' layer cache, while it keeps its position; and its secret
    build args, unless the new rule gives ``secret_build_args``)."""
    values = dict(edit.fields)
    if "clone_url" in values:
        check_clone_url(values["clone_url"], allow_file_clones)
    for key in ("image", "default_branch"):
        if key in values:
            values[key] = values[key].strip()
    _check_target(values.get("provider", trigger.provider), values.get("repository", trigger.repository),
                  values.get("image", trigger.image), registry)
    if "default_branch" in values:
        _check_branch(values["default_branch"])
    has_key = values["ssh_key"] if "ssh_key" in values else trigger.ssh_key_enc
    if has_key and not values.get("ssh_known_hosts", trigger.ssh_known_hosts):
        raise InputError("an SSH deploy key needs known hosts (ssh-keyscan HOST), so host keys are checked")
    for key, value in values.items():
        if key in _SEALED:
            setattr(trigger, _SEALED[key], box.seal(value) if value else None)
        elif key == "schedule":
            _set_schedule(trigger, value)
        else:
            setattr(trigger, key, value.strip("/") if key == "repository" else value)
    if edit.rules is not None:
        kept = list(trigger.rules)
        # checks every rule before changing any
        columns = []
        for position, rule in enumerate(edit.rules):
            with rule_at(position):
                columns.append(_rule_columns(rule, box, kept[position] if position < len(kept) else None))
        for position, rule_columns in enumerate(columns):
            if position < len(kept):
                for name, value in rule_columns.items():
                    setattr(kept[position], name, value)
            else:
                trigger.rules.append(TriggerRule(position=position, **rule_columns))
        for extra in kept[len(columns):]:
            trigger.rules.remove(extra)
    session.flush()
    return trigger


def delete_trigger(session: Session, trigger_id: int) -> None:
    """Delete a trigger and its rules; its builds and deliveries stay (their trigger becomes null).

    Refused while one of its builds is queued or running.
    """
    get_trigger(session, trigger_id)
    running = session.scalar(select(Build.id).where(
        Build.trigger_id == trigger_id, Build.state.in_(("queued", "cloning", "building", "pushing"))).limit(1))
    if running is not None:
        raise Conflict(f"build {running} of this trigger is still queued or running: wait for it or cancel it")
    session.execute(delete(Trigger).where(Trigger.id == trigger_id))
