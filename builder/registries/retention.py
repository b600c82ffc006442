"""Retention: a rule's ``"retention": {"keep": N}`` keeps the newest N per-commit tags it pushed.

Per-commit tags are those its templates with ``{sha}``, ``{short_sha}`` or ``{timestamp}`` made
(``builder.triggers.rules.per_commit_templates``), worked out again for each succeeded build from the build's
own commit, ref and creation time, and only where the build's recorded tags have them. Walking the
rule's builds newest first, the first N distinct such tags are kept; each older one is deleted from
the registry (``builder/registries/deletes.py``): the tag, and its manifest once no tag points at it.
A registry that can delete only manifests gets the manifest deleted when no other tag points at it,
and otherwise a refusal recorded. Every deletion, refusal and already-missing tag is a
``RetentionDeletion`` row; a recorded tag is never tried again. Registry outages are not recorded:
the next pass tries again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from builder.errors import TransientError
from builder.intake.events import PushEvent
from builder.registries.image_names import registry_host
from builder.db.engine import write_lock
from builder.db.models import Build, BuildState, RetentionDeletion, TriggerRule, utcnow
from builder.registries.credentials import RegistryAccess
from builder.registries.deletes import NOT_TRUSTED, DeleteRefused, Registry, TagDeleteUnsupported
from builder.registries.retention_records import DONE
from builder.triggers.rules import TagContext, match, per_commit_templates, render_tags
from builder.settings import Settings
from builder.triggers.lookup import rule_spec

log = logging.getLogger(__name__)


def commit_tags(rule: TriggerRule, build: Build, default_branch: str, rendered_at: datetime | None = None) -> list[str]:
    """The per-commit tags ``build`` pushed under ``rule``'s current templates; ``{timestamp}`` is of
    ``rendered_at`` (a rebuild pushes the tags its original made: the original's creation time)."""
    spec = rule_spec(rule)
    templates = per_commit_templates(spec.tags)
    event = PushEvent(provider=build.provider, repository=build.repository, ref=build.ref,
                      ref_type=build.ref_type, ref_name=build.ref_name, commit=build.commit)  # type: ignore[arg-type]
    captures = match(spec, event)
    if not templates or captures is None:  # the rule's pattern changed since: this build cannot be told
        return []
    tags, _notes = render_tags(replace(spec, tags=tuple(templates)), event,
                               TagContext(captures, default_branch, rendered_at or build.created_at))
    return [tag for tag in tags if tag in build.tags]


def expired_tags(session: Session, rule: TriggerRule,
                 trusted: Callable[[str], bool] = lambda host: False) -> list[tuple[Build, str]]:
    """(build, tag) pairs past the rule's ``retention_keep`` and not handled yet, oldest last. A tag refused
    because its registry was not trusted (``trusted``: is it now?) is handled only while it still is not."""
    keep = rule.retention_keep or 0
    builds = session.scalars(select(Build).where(Build.rule_id == rule.id, Build.state == BuildState.SUCCEEDED.value,
                                                 Build.push.is_(True)).order_by(Build.id.desc()))
    seen: set[tuple[str, str]] = set()
    expired = []
    for build in builds:  # only builds that pushed: a "push": false build's tags were never in the registry
        for tag in commit_tags(rule, build, rule.trigger.default_branch, _tags_rendered_at(session, build)):
            if (build.image, tag) in seen:
                continue
            seen.add((build.image, tag))
            if len(seen) > keep:
                expired.append((build, tag))
    handled = {(build_id, tag) for build_id, tag, outcome, detail, repository in session.execute(
        select(RetentionDeletion.build_id, RetentionDeletion.tag, RetentionDeletion.outcome, RetentionDeletion.detail,
               RetentionDeletion.repository).where(
            RetentionDeletion.rule_id == rule.id, RetentionDeletion.kind == "tag", RetentionDeletion.outcome.in_(DONE)))
        if not (outcome == "refused" and _untrusted(detail, repository) and trusted(registry_host(repository or "")))}
    return [(build, tag) for build, tag in expired if (build.id, tag) not in handled]


def _untrusted(detail: str | None, repository: str | None) -> bool:
    """Whether a refusal was buildhook's own, its registry not trusted (not the registry's answer)."""
    return (detail or "").startswith(f"registry {registry_host(repository or '')} {NOT_TRUSTED} ")


def _tags_rendered_at(session: Session, build: Build) -> datetime:
    """When ``build``'s tags were rendered: a rebuild copies its original's tags (rebuilds of rebuilds too)."""
    while build.origin == "rebuild" and build.rebuild_of is not None:
        original = session.get(Build, build.rebuild_of)
        if original is None:  # pruned: its own time is the best left
            break
        build = original
    return build.created_at


# How long a worker may prune one rule before another may take over (the lease of a worker that died).
LEASE = timedelta(minutes=15)
# How long a worker waits for another one's pass over the same rule before leaving the rule to the sweep.
LEASE_WAIT = 120.0


def prune_rule(sessions: sessionmaker[Session], settings: Settings, rule_id: int,
               wait: float = LEASE_WAIT) -> list[RetentionDeletion]:
    """Delete the rule's expired tags (and manifests left without a tag); return what was recorded.

    One worker at a time per rule (a lease on the rule's row): two builds of a rule that succeed
    together would otherwise both delete the same tags and record each deletion twice. The second
    waits for the first's pass, then makes its own (its build's tags are in it); after ``wait``
    seconds it leaves the rule to the next sweep."""
    with sessions() as session:  # most rules keep every tag: nothing to lease, nothing to write
        if not session.scalar(select(TriggerRule.retention_keep).where(TriggerRule.id == rule_id)):
            return []
    deadline = time.monotonic() + wait
    while (lease := _take_lease(sessions, rule_id)) is None:
        if time.monotonic() >= deadline:
            log.info("retention of rule %s: another worker is at it; left to the next sweep", rule_id)
            return []
        time.sleep(0.2)
    try:
        return _prune(sessions, settings, rule_id)
    finally:  # only this lease: one that ran out meanwhile may be another worker's now
        _set_lease(sessions, rule_id, None, TriggerRule.retention_lease_until == lease)


def _take_lease(sessions: sessionmaker[Session], rule_id: int) -> datetime | None:
    """The rule's lease (until when it holds), or None while another worker holds it."""
    now = utcnow()
    free = or_(TriggerRule.retention_lease_until.is_(None), TriggerRule.retention_lease_until < now)
    return now + LEASE if _set_lease(sessions, rule_id, now + LEASE, free) else None


def _set_lease(sessions: sessionmaker[Session], rule_id: int, until: datetime | None,
               *where: ColumnElement[bool]) -> bool:
    with sessions() as session, write_lock(session):
        result = session.execute(update(TriggerRule).where(TriggerRule.id == rule_id, *where)
                                 .values(retention_lease_until=until))
        session.commit()
        return result.rowcount == 1


def _prune(sessions: sessionmaker[Session], settings: Settings, rule_id: int) -> list[RetentionDeletion]:
    recorded: list[RetentionDeletion] = []
    with sessions() as session:
        rule = session.get(TriggerRule, rule_id)
        if rule is None or not rule.retention_keep:
            return []
        registries = RegistryAccess(settings)
        by_image: dict[str, list[tuple[Build, str]]] = {}
        for build, tag in expired_tags(session, rule, registries.trusts):
            by_image.setdefault(build.image, []).append((build, tag))
        for image, expired in by_image.items():
            host = registry_host(image)
            repository = image.removeprefix(f"{host}/")
            try:
                recorded += _prune_image(session, rule, registries, host, repository, expired)
            except TransientError as exc:
                log.warning("retention of rule %s: %s (tried again later)", rule.id, exc)
            session.commit()
    return recorded


def _prune_image(session: Session, rule: TriggerRule, registries: RegistryAccess, host: str, repository: str,
                 expired: list[tuple[Build, str]]) -> list[RetentionDeletion]:
    recorded = []
    kept_before = {(build_id, tag, detail) for build_id, tag, detail in session.execute(
        select(RetentionDeletion.build_id, RetentionDeletion.tag, RetentionDeletion.detail).where(
            RetentionDeletion.rule_id == rule.id, RetentionDeletion.outcome == "kept"))}

    def record(kind: str, build: Build, tag: str | None, digest: str | None, outcome: str,
               detail: str | None = None) -> None:
        log.info("retention of rule %s: %s:%s %s %s", rule.id, repository, tag or digest, kind, outcome)
        if outcome == "kept" and (build.id, tag, detail) in kept_before:
            return  # still in the way, as recorded on an earlier pass
        row = RetentionDeletion(kind=kind, trigger_id=rule.trigger_id, rule_id=rule.id, build_id=build.id,
                                repository=f"{host}/{repository}", tag=tag, digest=digest, count=1,
                                outcome=outcome, detail=detail)
        session.add(row)
        recorded.append(row)

    try:
        registry = Registry(registries, host, repository)
        pointing = {tag: registry.digest(tag) for tag in registry.tags()}  # what every tag points at now
    except DeleteRefused as exc:
        for build, tag in expired:
            record("tag", build, tag, None, "refused", str(exc))
        return recorded
    groups: dict[str, list[tuple[Build, str]]] = {}  # the expired tags of each manifest, oldest last
    for build, tag in expired:
        digest = pointing.pop(tag, None)
        if digest is None:
            record("tag", build, tag, None, "missing", "the registry no longer has this tag")
        else:
            groups.setdefault(digest, []).append((build, tag))
    for digest, group in groups.items():
        others = sorted(other for other, points in pointing.items() if points == digest)
        _delete(registry, group, digest, others, record)
    return recorded


def _delete(registry: Registry, group: list[tuple[Build, str]], digest: str, others: list[str],
            record) -> None:  # type: ignore[no-untyped-def]
    """Delete the expired tags in ``group`` (all pointing at ``digest``), then the manifest unless ``others``
    (tags that are not expired) still point at it; record each step."""
    left = list(others)
    for n, (build, tag) in enumerate(group):
        try:
            registry.delete_tag(tag)
        except TagDeleteUnsupported as unsupported:  # the registry's answer for every tag: only the manifest goes
            _delete_with_manifest(registry, group[n:], digest, left, str(unsupported), record)
            return
        except DeleteRefused as refused:
            record("tag", build, tag, digest, "refused", str(refused))
            left.append(tag)
            continue
        record("tag", build, tag, digest, "deleted")
    if left:
        return
    try:
        registry.delete_manifest(digest)
    except DeleteRefused as refused:
        record("manifest", group[0][0], None, digest, "refused", str(refused))
        return
    record("manifest", group[0][0], None, digest, "deleted")


def _delete_with_manifest(registry: Registry, group: list[tuple[Build, str]], digest: str, others: list[str],
                          unsupported: str, record) -> None:  # type: ignore[no-untyped-def]
    """A registry that deletes no tag: the manifest goes, with every tag in ``group``, once ``others`` are gone."""
    if others:
        held = f"{', '.join(others)} {'still points' if len(others) == 1 else 'still point'} at its manifest"
        for build, tag in group:
            record("tag", build, tag, digest, "kept", f"{unsupported}, and {held}: tried again on a later pass")
        return
    try:
        registry.delete_manifest(digest)
    except DeleteRefused as refused:
        for build, tag in group:
            record("tag", build, tag, digest, "refused", str(refused))
        return
    record("manifest", group[0][0], None, digest, "deleted")
    for build, tag in group:
        record("tag", build, tag, digest, "deleted", f"{unsupported}: deleted with its manifest")


def prune_every_rule(sessions: sessionmaker[Session], settings: Settings) -> int:
    """Every rule with a retention: what is expired is deleted (the periodic sweep); the rows recorded."""
    with sessions() as session:
        rule_ids = list(session.scalars(select(TriggerRule.id).where(TriggerRule.retention_keep.is_not(None))))
    return sum(len(prune_rule(sessions, settings, rule_id)) for rule_id in rule_ids)
