"""Which builds one push makes for one trigger: rules, skip markers, path filters, superseding.

Used by webhook intake and by manual runs alike. Returns unsaved ``Build``s;
the caller adds them to its session and commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from builder.events import PushEvent
from builder.models import Build, BuildState, Trigger, TriggerRule, utcnow
from builder.path_filters import filter_reason
from builder.rules import LATEST, TagContext, match, render_tags
from builder.semver import Version
from builder.settings import Settings
from builder.tags import image_repository
from builder.triggers import rule_spec

SKIP_MARKERS = ("[skip ci]", "[ci skip]", "[skip build]", "[build skip]")


@dataclass
class Plan:
    builds: list[Build] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def skip_marker(message: str | None) -> str | None:
    lowered = (message or "").lower()
    return next((marker for marker in SKIP_MARKERS if marker in lowered), None)


def plan_builds(
    session: Session,
    trigger: Trigger,
    event: PushEvent,
    settings: Settings,
    delivery_id: int | None = None,
    now: datetime | None = None,
) -> Plan:
    now = now or utcnow()
    plan = Plan()
    where = f"{event.ref_type} {event.ref_name!r}"
    marker = skip_marker(event.message)
    if marker:
        plan.notes.append(f"{where}: the commit message says {marker}")
        return plan
    matched = False
    for rule in trigger.rules:
        spec = rule_spec(rule)
        captures = match(spec, event)
        if captures is None:
            continue
        matched = True
        pending_filters = event.changed_files is None
        if not pending_filters:
            reason = filter_reason(event.changed_files or (), spec.included_files, spec.ignored_files)
            if reason:
                plan.notes.append(f"{where}, rule {rule.position + 1}: {reason}")
                continue
        highest = event.ref_type == "tag" and LATEST in spec.tags and _highest_release(session, rule, event.ref_name)
        tags, notes = render_tags(spec, event, TagContext(captures, trigger.default_branch, now, highest))
        plan.notes.extend(f"{where}, rule {rule.position + 1}: {note}" for note in notes)
        if not tags:
            plan.notes.append(f"{where}, rule {rule.position + 1}: no tag template could be rendered")
            continue
        if trigger.supersede:
            _supersede_queued(session, rule.id, event, now)
        plan.builds.append(
            Build(
                trigger_id=trigger.id,
                rule_id=rule.id,
                delivery_id=delivery_id,
                provider=event.provider,
                repository=trigger.repository,
                clone_url=trigger.clone_url,
                before=event.before,
                ref=event.ref,
                ref_type=event.ref_type,
                ref_name=event.ref_name,
                commit=event.commit,
                commit_message=event.message,
                author=event.author,
                image=image_repository(trigger.image, settings.registry),
                tags=tags,
                dockerfile=spec.dockerfile,
                context=spec.context,
                build_args=dict(spec.build_args),
                target=spec.target,
                included_files=list(spec.included_files) if pending_filters else [],
                ignored_files=list(spec.ignored_files) if pending_filters else [],
                created_at=now,
            )
        )
    if not matched:
        plan.notes.append(f"{where}: no rule of trigger {trigger.id} matches")
    return plan


def _highest_release(session: Session, rule: TriggerRule, tag: str) -> bool:
    """True when ``tag`` is a release version at least as high as every tag this rule built."""
    version = Version.parse(tag)
    if version is None or not version.is_release:
        return False
    built = session.scalars(
        select(Build.ref_name).where(Build.rule_id == rule.id, Build.ref_type == "tag").distinct()
    )
    others = [v for v in map(Version.parse, built) if v is not None and v.is_release]
    return all(version.key() >= other.key() for other in others)


def _supersede_queued(session: Session, rule_id: int, event: PushEvent, now: datetime) -> None:
    session.execute(
        update(Build)
        .where(Build.rule_id == rule_id, Build.ref == event.ref, Build.state == BuildState.QUEUED.value)
        .values(
            state=BuildState.SUPERSEDED.value,
            reason=f"superseded by a newer push of {event.short_sha}",
            finished_at=now,
        )
        .execution_options(synchronize_session=False)
    )
