"""Deploy rules: which pushed images go to which environment, through which targets."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from builder.errors import InputError
from builder.db.models import DeployRule, DeployTarget
from builder.notify.targets import TargetPolicy, check_docker_host, check_url
from builder.notify.urls import seal_url
from builder.registries.credentials import RegistryAccess, canonical_host
from builder.secrets import SecretBox
from builder.triggers.semver import Version, parse_range, satisfies

TAG_MATCHES = ("exact", "glob", "regex", "semver")
_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*")


@dataclass(frozen=True)
class TargetSpec:
    kind: str  # "webhook" | "docker"
    url: str | None = None
    secret: str | None = field(default=None, repr=False)
    container: str | None = None
    docker_host: str | None = None


@dataclass(frozen=True)
class DeployRuleSpec:
    repository: str
    tag: str
    environment: str
    targets: tuple[TargetSpec, ...]
    tag_match: str = ""  # empty: guessed from the pattern
    registry: str = ""  # empty: BUILDHOOK_REGISTRY
    auto: bool = True  # False: never fires on registry events, serves only promotions and rollbacks

    def effective_match(self) -> str:
        if self.tag_match:
            return self.tag_match
        if any(op in self.tag for op in ("<", ">", "^", "~", "=")):
            return "semver"
        return "glob" if any(c in self.tag for c in "*?[") else "exact"


def check_rule(spec: DeployRuleSpec, policy: TargetPolicy) -> None:
    if not _NAME.fullmatch(spec.repository):
        raise InputError(f"repository {spec.repository!r} is not an image repository name like acme/widget")
    match = spec.effective_match()
    if match not in TAG_MATCHES:
        raise InputError(f"tag match must be one of {', '.join(TAG_MATCHES)}")
    if match == "regex":
        try:
            re.compile(spec.tag)
        except re.error as exc:
            raise InputError(f"tag pattern {spec.tag!r} is not a valid regular expression: {exc}") from None
    if match == "semver":
        try:
            parse_range(spec.tag)
        except ValueError as exc:
            raise InputError(f"tag range {spec.tag!r}: {exc}") from None
    if not spec.environment or len(spec.environment) > 64:
        raise InputError("environment must be a name of at most 64 characters")
    if not spec.targets:
        raise InputError("a deploy rule needs a target: --webhook-url URL or --container NAME")
    for target in spec.targets:
        if target.kind == "webhook":
            if not target.url:
                raise InputError("a webhook target needs a URL")
            check_url(target.url, policy, resolve_names=False)
        elif target.kind == "docker":
            if not target.container:
                raise InputError("a docker target needs a container name")
            check_docker_host(target.docker_host, policy)
        else:
            raise InputError(f"unknown target kind {target.kind!r}")


def rule_registry(spec: DeployRuleSpec, registries: RegistryAccess) -> str:
    """The rule's registry as stored (default ``BUILDHOOK_REGISTRY``): one buildhook trusts, else ``InputError``."""
    registry = spec.registry.strip() or registries.own
    try:
        canonical = canonical_host(registry)
    except ValueError as exc:
        raise InputError(f"registry: {exc}") from None
    if not registries.trusts(canonical):
        raise InputError(f"registry {registry} is not trusted: a deploy rule names BUILDHOOK_REGISTRY "
                         f"({registries.own}) or one of BUILDHOOK_TRUSTED_REGISTRIES")
    return canonical


def create_rule(session: Session, box: SecretBox, spec: DeployRuleSpec, policy: TargetPolicy,
                registries: RegistryAccess) -> DeployRule:
    check_rule(spec, policy)
    rule = DeployRule(repository=spec.repository, tag_match=spec.effective_match(), tag_pattern=spec.tag,
                      environment=spec.environment, registry_host=rule_registry(spec, registries), auto=spec.auto)
    for target in spec.targets:
        sealed = seal_url(box, target.url) if target.url else None
        rule.targets.append(DeployTarget(
            kind=target.kind, url_enc=sealed and sealed.enc, url_redacted=sealed and sealed.redacted,
            secret_enc=box.seal(target.secret) if target.secret else None,
            container=target.container, docker_host=target.docker_host))
    session.add(rule)
    session.flush()
    return rule


def tag_matches(rule: DeployRule, tag: str) -> bool:
    if rule.tag_match == "exact":
        return tag == rule.tag_pattern
    if rule.tag_match == "glob":
        return fnmatch.fnmatchcase(tag, rule.tag_pattern)
    if rule.tag_match == "regex":
        return re.fullmatch(rule.tag_pattern, tag) is not None
    version = Version.parse(tag)
    return version is not None and satisfies(version, rule.tag_pattern)


def matching_rules(session: Session, repository: str, tag: str) -> list[DeployRule]:
    rules = session.scalars(
        select(DeployRule).where(DeployRule.repository == repository, DeployRule.enabled.is_(True),
                                 DeployRule.auto.is_(True))
        .order_by(DeployRule.id)
    )
    return [rule for rule in rules if tag_matches(rule, tag)]


def rule_to_dict(rule: DeployRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "registry": rule.registry_host,
        "repository": rule.repository,
        "tag_match": rule.tag_match,
        "tag": rule.tag_pattern,
        "environment": rule.environment,
        "enabled": rule.enabled,
        "auto": rule.auto,
        "targets": [
            {"id": t.id, "kind": t.kind, "url": t.url_redacted, "signed": t.secret_enc is not None,
             "container": t.container, "docker_host": t.docker_host}
            for t in rule.targets
        ],
        "created_at": rule.created_at.isoformat(),
    }


def spec_from_json(data: Any) -> DeployRuleSpec:
    if not isinstance(data, dict):
        raise InputError("expected a JSON object")
    for key in ("repository", "tag", "environment"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise InputError(f"{key!r} is required")
    targets = data.get("targets")
    if not isinstance(targets, list) or not all(isinstance(t, dict) for t in targets):
        raise InputError("targets must be a list of objects")
    parsed = []
    for target in targets:
        values = {k: target.get(k) for k in ("kind", "url", "secret", "container", "docker_host")}
        if not all(v is None or isinstance(v, str) for v in values.values()):
            raise InputError("target fields must be strings")
        parsed.append(TargetSpec(**values))  # type: ignore[arg-type]
    tag_match = data.get("tag_match") or ""
    if not isinstance(tag_match, str):
        raise InputError("tag_match must be a string")
    registry = data.get("registry") or ""
    if not isinstance(registry, str):
        raise InputError("registry must be a host[:port] string")
    auto = data.get("auto", True)
    if not isinstance(auto, bool):
        raise InputError("auto must be true or false")
    return DeployRuleSpec(repository=data["repository"], tag=data["tag"], environment=data["environment"],
                          targets=tuple(parsed), tag_match=tag_match, registry=registry, auto=auto)
