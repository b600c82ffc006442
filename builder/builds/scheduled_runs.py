"""Running triggers' schedules (``builder/triggers/schedules.py`` parses them): claim a due time, then build.

``run_due_schedules`` is periodic work of every worker's relay. For each trigger whose
``schedule_next_at`` has come, ``claim_due`` moves it to the next due time with one conditional
UPDATE (``WHERE schedule_next_at = <the due time read>``): one worker's UPDATE changes the row, the
others' change nothing, so each due time runs once. The winner runs ``run_schedule`` (or, for a
disabled trigger, only records that the due time passed).

A rule builds nothing in a run when its build of the tip is already queued or running (one build per
rule and commit waits, however many due times pass while the workers are busy), or, unless its
``"rebuild"`` is ``"always"``, when it already built the tip successfully. For an ``"always"`` rule
only a queued or running *scheduled* build counts: it fetches the base images again, a push's does
not (``pulls_base_images``). A rule that builds nothing supersedes and cancels nothing either.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Callable

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session, sessionmaker

from builder.triggers.git_access import git_environment
from builder.triggers.clone_urls import check_clone_url
from builder.errors import BuildhookError
from builder.intake.events import PushEvent
from builder.builds.commit_order import ACTIVE
from builder.builds.manual_runs import resolve_ref
from builder.db.models import Build, BuildState, Delivery, Trigger, TriggerRule, utcnow
from builder.metrics import count_build_end
from builder.intake.planning import Plan, plan_builds, supersede
from builder.triggers.schedules import next_due
from builder.secrets import SecretBox
from builder.settings import Settings
from builder.triggers.services import clone_auth

log = logging.getLogger(__name__)

EVENT = "schedule"  # the event of a scheduled run's delivery


def claim_due(sessions: sessionmaker[Session], trigger_id: int, due_at: datetime, schedule: str,
              now: datetime | None = None) -> bool:
    """Take due time ``due_at`` of the trigger's schedule; True for exactly one caller."""
    with sessions() as session:
        result = session.execute(update(Trigger)
                                 .where(Trigger.id == trigger_id, Trigger.schedule_next_at == due_at)
                                 .values(schedule_next_at=next_due(schedule, now or utcnow())))
        session.commit()
        return result.rowcount == 1


def run_due_schedules(sessions: sessionmaker[Session], settings: Settings,
                      send_builds: Callable[[list[int]], object], now: datetime | None = None) -> int:
    """Run every schedule whose time has come (and that this caller claims); return the runs made."""
    now = now or utcnow()
    with sessions() as session:
        due = list(session.execute(select(Trigger.id, Trigger.schedule_next_at, Trigger.schedule, Trigger.enabled)
                                   .where(Trigger.schedule.is_not(None), Trigger.schedule_next_at <= now)))
    runs = 0
    for trigger_id, due_at, schedule, enabled in due:
        if not claim_due(sessions, trigger_id, due_at, schedule, now):
            continue  # another worker runs it
        if not enabled:  # its due time passes by (claimed: the next one is set), recorded
            _record_disabled(sessions, trigger_id, due_at)
            continue
        runs += 1
        try:
            with sessions() as session:
                ids = run_schedule(session, session.get(Trigger, trigger_id), settings, due_at)
        except Exception as exc:  # recorded in the run's delivery where it could be; the next due time runs
            log.warning("scheduled run of trigger %s (%s) failed: %s", trigger_id, due_at.isoformat(), exc)
            continue
        if ids:
            send_builds(ids)
    return runs


def run_schedule(session: Session, trigger: Trigger, settings: Settings, due_at: datetime) -> list[int]:
    """Build the default branch's tip as a push of it would, marked ``scheduled_for``; a rule whose build
    of the tip is queued or running, or (without ``"rebuild": "always"``) that built it successfully,
    builds nothing (the module's docstring). Records the run's delivery and commits; returns the new
    builds' ids (not yet sent)."""
    what = _what(due_at)
    try:
        check_clone_url(trigger.clone_url, settings.allow_file_clones)
        auth = clone_auth(trigger, SecretBox(settings.secret_key))
        with git_environment(trigger.clone_url, auth, lambda _line: None) as env:
            tip = resolve_ref(trigger.clone_url, branch=trigger.default_branch, env=env)
    except BuildhookError as exc:
        _record(session, trigger, "failed", f"{what}: {exc}", 502)
        session.commit()
        raise
    event = PushEvent(provider=trigger.provider, repository=trigger.repository, ref=tip.ref, ref_type="branch",
                      ref_name=tip.ref_name, commit=tip.commit, author=None, message=None, changed_files=None,
                      before=None)
    plan = plan_builds(session, trigger, event, settings, supersede_now=False)
    builds, notes = _not_built_again(session, plan.builds, list(plan.notes))
    where = f"{what} of {trigger.default_branch} at {event.short_sha}"
    if not builds:
        _record(session, trigger, "ignored", f"{where}: {'; '.join(notes) or 'nothing to build'}", 200)
        session.commit()
        return []
    _keep_rules_of(session, plan, builds)
    supersede(session, plan)
    delivery = _record(session, trigger, "accepted", "; ".join([f"{where}: queued {len(builds)} build(s)", *notes]),
                       201)
    session.flush()
    for build in builds:
        build.delivery_id, build.scheduled_for, build.origin = delivery.id, due_at, "schedule"
    session.add_all(builds)
    session.commit()
    count_build_end(BuildState.SUPERSEDED.value, trigger.id,
                    plan.superseded + sum(build.state == BuildState.SUPERSEDED.value for build in builds))
    return [build.id for build in builds]


def _what(due_at: datetime) -> str:
    return f"scheduled run of {due_at.strftime('%Y-%m-%d %H:%M')} UTC"


def _not_built_again(session: Session, builds: list[Build], notes: list[str]) -> tuple[list[Build], list[str]]:
    """The planned builds to queue; each one left out adds its reason to ``notes``."""
    kept = []
    for build in builds:
        reason = _skip_reason(session, build)
        if reason:
            notes.append(reason)
        else:
            kept.append(build)
    return kept, notes


def _skip_reason(session: Session, build: Build) -> str | None:
    """Why the rule builds nothing in this run: its build of the commit waits or runs, or (unless it
    rebuilds always) it built the commit successfully; None to build."""
    rule = session.get(TriggerRule, build.rule_id)
    if rule is None:
        return None
    short, always = build.commit[:7], rule.rebuild == "always"
    active = _active_build(session, build, scheduled_only=always)
    if active is not None:
        waits = "queued" if active.state == BuildState.QUEUED.value else "running"
        return f"rule {rule.position + 1}: build #{active.id} of {short} is already {waits}"
    if always:
        return None
    done = session.scalar(select(Build.id).where(
        Build.rule_id == build.rule_id, Build.commit == build.commit,
        Build.state == BuildState.SUCCEEDED.value).order_by(Build.id.desc()).limit(1))
    if done is None:
        return None
    return (f"rule {rule.position + 1}: {short} is unchanged since build {done} "
            '(a rule with "rebuild": "always" rebuilds it)')


def _active_build(session: Session, build: Build, scheduled_only: bool) -> Row[tuple[int, str]] | None:
    """The rule's latest queued or running (and not being cancelled) build of the same ref and commit,
    as (id, state); with ``scheduled_only``, a scheduled one only."""
    query = select(Build.id, Build.state).where(
        Build.rule_id == build.rule_id, Build.ref == build.ref, Build.commit == build.commit,
        Build.state.in_(ACTIVE), Build.cancel_requested_at.is_(None))
    if scheduled_only:
        query = query.where(Build.origin == EVENT)
    return session.execute(query.order_by(Build.id.desc()).limit(1)).first()


def _keep_rules_of(session: Session, plan: Plan, builds: list[Build]) -> None:
    """Keep in ``plan`` only the superseding and cancelling of the rules whose builds are queued."""
    targets = [build_id for build_id, _reason in (*plan.supersedes, *plan.cancels)]
    if not targets:
        return
    rule_of = {build_id: rule_id for build_id, rule_id
               in session.execute(select(Build.id, Build.rule_id).where(Build.id.in_(targets)))}
    rules = {build.rule_id for build in builds}
    plan.supersedes = [entry for entry in plan.supersedes if rule_of.get(entry[0]) in rules]
    plan.cancels = [entry for entry in plan.cancels if rule_of.get(entry[0]) in rules]


DISABLED = "trigger is disabled"


def _record_disabled(sessions: sessionmaker[Session], trigger_id: int, due_at: datetime) -> None:
    """The first due time that passes while the trigger is disabled is recorded; the next ones are not (a
    disabled every-minute schedule would otherwise push its real deliveries off the page)."""
    with sessions() as session:
        trigger = session.get(Trigger, trigger_id)
        last = session.scalar(select(Delivery.reason).where(Delivery.trigger_id == trigger_id, Delivery.event == EVENT)
                              .order_by(Delivery.id.desc()).limit(1))
        if trigger is not None and not (last or "").endswith(f": {DISABLED}"):
            _record(session, trigger, "ignored", f"{_what(due_at)}: {DISABLED}", 200)
            session.commit()


def _record(session: Session, trigger: Trigger, outcome: str, reason: str, status: int) -> Delivery:
    delivery = Delivery(provider=trigger.provider, delivery_id=None, event=EVENT, repository=trigger.repository,
                        trigger_id=trigger.id, outcome=outcome, reason=reason, status_code=status, dedupe_key=None)
    session.add(delivery)
    return delivery


def pulls_base_images(session: Session, build: Build) -> bool:
    """Whether the build fetches its FROM images again: a scheduled build of a ``"rebuild": "always"``
    rule, which exists to pick up base-image fixes (a local copy of the base would hide them)."""
    if build.origin != "schedule" or build.rule_id is None:
        return False
    return session.scalar(select(TriggerRule.rebuild).where(TriggerRule.id == build.rule_id)) == "always"
