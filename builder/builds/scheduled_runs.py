"""Running triggers' schedules (``builder/triggers/schedules.py`` parses them): claim a due time, then build.

``run_due_schedules`` is periodic work of every worker's relay. For each trigger whose
``schedule_next_at`` has come, ``claim_due`` moves it to the next due time with one conditional
UPDATE (``WHERE schedule_next_at = <the due time read>``): one worker's UPDATE changes the row, the
others' change nothing, so each due time runs once. The winner runs ``run_schedule``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from builder.triggers.git_access import git_environment
from builder.triggers.clone_urls import check_clone_url
from builder.errors import BuildhookError
from builder.intake.events import PushEvent
from builder.builds.manual_runs import resolve_ref
from builder.db.models import Build, BuildState, Delivery, Trigger, TriggerRule, utcnow
from builder.intake.planning import plan_builds, supersede
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
        if not claim_due(sessions, trigger_id, due_at, schedule, now) or not enabled:
            continue  # another worker runs it; a disabled trigger's due time passes by
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
    """Build the default branch's tip as a push of it would, marked ``scheduled_for``; rules without
    ``"rebuild": "always"`` skip a commit they already built successfully. Records the run's delivery
    and commits; returns the new builds' ids (not yet sent)."""
    what = f"scheduled run of {due_at.strftime('%Y-%m-%d %H:%M')} UTC"
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
    builds, notes = _unchanged_skipped(session, plan.builds, list(plan.notes))
    where = f"{what} of {trigger.default_branch} at {event.short_sha}"
    if not builds:
        _record(session, trigger, "ignored", f"{where}: {'; '.join(notes) or 'nothing to build'}", 200)
        session.commit()
        return []
    plan.supersedes = [entry for entry in plan.supersedes if entry[0] in {b.rule_id for b in builds}]
    supersede(session, plan)
    delivery = _record(session, trigger, "accepted", "; ".join([f"{where}: queued {len(builds)} build(s)", *notes]),
                       201)
    session.flush()
    for build in builds:
        build.delivery_id, build.scheduled_for, build.origin = delivery.id, due_at, "schedule"
    session.add_all(builds)
    session.commit()
    return [build.id for build in builds]


def _unchanged_skipped(session: Session, builds: list[Build], notes: list[str]) -> tuple[list[Build], list[str]]:
    kept = []
    for build in builds:
        rule = session.get(TriggerRule, build.rule_id)
        if rule is not None and rule.rebuild != "always":
            done = session.scalar(select(Build.id).where(
                Build.rule_id == build.rule_id, Build.commit == build.commit,
                Build.state == BuildState.SUCCEEDED.value).order_by(Build.id.desc()).limit(1))
            if done is not None:
                notes.append(f"rule {rule.position + 1}: {build.commit[:7]} is unchanged since build {done} "
                             '(a rule with "rebuild": "always" rebuilds it)')
                continue
        kept.append(build)
    return kept, notes


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
