"""Which builds one push makes for one trigger: rules, skip markers, path filters, superseding.

Used by webhook intake and by manual runs alike. Returns the new builds' column
values (and, on demand, unsaved ``Build``s); the caller inserts them and commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import bindparam, literal, select, update

from builder.triggers.clone_urls import clone_url_problem
from builder.builds.commit_order import RUNNING, Order, chain_links, chain_order, chain_siblings
from builder.intake.events import PushEvent
from builder.db.engine import Reader, connection_of
from builder.db.prepared import Prepared
from builder.db.models import Build, BuildState, Trigger, TriggerRule, utcnow
from builder.triggers.path_filters import filter_reason
from builder.triggers.rules import LATEST, TagContext, match, render_tags
from builder.triggers.semver import Version
from builder.settings import Settings
from builder.triggers.tags import image_repository
from builder.triggers.lookup import HookRule, HookTrigger, rule_spec

SKIP_MARKERS = ("[skip ci]", "[ci skip]", "[skip build]", "[build skip]")


@dataclass
class Plan:
    # The column values of each new build, for a Core INSERT (webhook intake) ...
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # (build id, reason): the still-queued builds of older commits these new ones supersede ...
    supersedes: list[tuple[int, str]] = field(default_factory=list)
    # ... and the running ones they cancel (rules with ``cancel_running``).
    cancels: list[tuple[int, str]] = field(default_factory=list)
    # How many of ``supersedes`` were still queued and are superseded now (set by ``supersede``).
    superseded: int = 0

    @property
    def ended_superseded(self) -> int:
        """Builds these plans made superseded: queued ones replaced (once run) and their own born so."""
        return self.superseded + sum(row["state"] == BuildState.SUPERSEDED.value for row in self.rows)

    @cached_property
    def builds(self) -> list[Build]:
        """... or as unsaved ``Build``s (made once) for a session to add."""
        return [Build(**row) for row in self.rows]


def skip_marker(message: str | None) -> str | None:
    lowered = (message or "").lower()
    return next((marker for marker in SKIP_MARKERS if marker in lowered), None)


def plan_builds(
    session: Reader,
    trigger: Trigger | HookTrigger,
    event: PushEvent,
    settings: Settings,
    delivery_id: int | None = None,
    now: datetime | None = None,
    supersede_now: bool = True,
) -> Plan:
    """The builds ``event`` makes for ``trigger``.

    Superseding (``Plan.supersedes``) is done here, in the caller's transaction, unless
    ``supersede_now`` is false: then the caller runs ``supersede(session, plan)`` itself,
    in the same transaction as the INSERTs (webhook intake does, to take the write lock late).
    """
    now = now or utcnow()
    plan = Plan()
    where = (f"pull request #{event.pull_request} ({event.ref_name!r} into {event.base_branch!r})"
             if event.pull_request is not None else f"{event.ref_type} {event.ref_name!r}")
    marker = skip_marker(event.message)
    if marker:
        plan.notes.append(f"{where}: the commit message says {marker}")
        return plan
    refused = clone_url_problem(trigger.clone_url, settings.allow_file_clones)
    if refused:  # a trigger stored before clone URLs were checked: nothing for git
        plan.notes.append(f"trigger {trigger.id}: {refused}")
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
        older = _order(session, plan, rule.id, spec.cancel_running, event) if trigger.supersede else None
        if older:
            plan.notes.append(f"{where}, rule {rule.position + 1}: {older}")
        fork = ("trusted" if spec.forks == "trusted" else "untrusted") if event.from_fork else None
        if spec.pushes and fork == "untrusted":
            plan.notes.append(f"{where}, rule {rule.position + 1}: the request comes from a fork the rule does "
                              "not trust: built without pushing and without secret build args")
        plan.rows.append(
            dict(
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
                state=BuildState.SUPERSEDED.value if older else BuildState.QUEUED.value,
                reason=older,
                finished_at=now if older else None,
                attempts=0,
                created_at=now,
                pull_request=event.pull_request,
                base_branch=event.base_branch,
                fork=fork,
                push=spec.pushes and fork != "untrusted",
            )
        )
    if not matched:
        plan.notes.append(f"{where}: no rule of trigger {trigger.id} matches")
    if supersede_now:
        supersede(session, plan, now)
    return plan


def _order(session: Reader, plan: Plan, rule_id: int, cancel_running: bool, event: PushEvent) -> str | None:
    """Why the new build is superseded at once (a build of a newer commit came first), or None; then
    the builds of older commits (or the same one) it supersedes, and cancels, are added to ``plan``.
    Builds whose order the payloads cannot settle are left to the worker (``builder/builds/commit_order.py``)."""
    found = chain_siblings(session, rule_id, event.ref, event.commit, event.before)
    links = chain_links(found)
    orders = [(other, chain_order(event.commit, event.before, other, links)) for other in found]
    for other, order in orders:
        if order is Order.OLDER:
            return (f"superseded: commit {event.short_sha} is older than {other.short} (build #{other.id}), "
                    "whose webhook came first")
    for other, order in orders:
        if order is Order.UNKNOWN:
            continue
        if other.state == BuildState.QUEUED.value:
            plan.supersedes.append((other.id, f"superseded by a newer push of {event.short_sha}"))
        elif other.state in RUNNING and cancel_running and order is Order.NEWER:
            plan.cancels.append((other.id, f"cancelled: superseded by a newer push of {event.short_sha}"))
    return None


def _highest_release(session: Reader, rule: TriggerRule | HookRule, tag: str) -> bool:
    """True when ``tag`` is a release version at least as high as every tag this rule built."""
    version = Version.parse(tag)
    if version is None or not version.is_release:
        return False
    built = session.scalars(
        select(Build.ref_name).where(Build.rule_id == rule.id, Build.ref_type == "tag").distinct()
    )
    others = [v for v in map(Version.parse, built) if v is not None and v.is_release]
    return all(version.key() >= other.key() for other in others)


# Compiled once, with its values bound per call (``builder/db/prepared.py``): run under the
# write lock for every delivery that supersedes. ``ix_builds_rule_ref_state`` finds the rows.
_SUPERSEDE = Prepared(
    update(Build)
    .where(Build.id == bindparam("s_id"), Build.state == BuildState.QUEUED.value)
    .values(state=BuildState.SUPERSEDED.value, reason=bindparam("s_reason"), finished_at=bindparam("s_now"))
)
# A cancel request, as ``builder/builds/actions.py`` makes one: the worker running it stops it.
_CANCEL = Prepared(
    update(Build)
    .where(Build.id == bindparam("s_id"), Build.state.in_([literal(state) for state in RUNNING]),
           Build.cancel_requested_at.is_(None))
    .values(cancel_requested_at=bindparam("s_now"), reason=bindparam("s_reason"))
)


def supersede(session: Reader, plan: Plan, now: datetime | None = None) -> None:
    """Mark superseded the still-queued builds the plan's builds replace, and ask the running ones it
    cancels to stop (before its builds are added)."""
    plan.superseded = 0  # a transaction run again counts again
    for statement, targets in ((_SUPERSEDE, plan.supersedes), (_CANCEL, plan.cancels)):
        for build_id, reason in targets:
            changed = statement.run(connection_of(session), {"s_id": build_id, "s_reason": reason,
                                                             "s_now": now or utcnow()})
            if statement is _SUPERSEDE:
                plan.superseded += changed
