"""Scheduled runs in this process (``run_schedule``, ``run_due_schedules``), without a worker: what a due
time queues, skips and supersedes when builds of the tip already wait or run, and a disabled trigger's
due time. What the user sees is asserted: the builds' rows in the API and the run's delivery."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from builder.builds.commit_order import ACTIVE
from builder.builds.scheduled_runs import run_due_schedules, run_schedule
from builder.db.models import Build, Trigger, TriggerRule, utcnow
from tests.workers.test_schedules_e2e import schedule_deliveries

SECRET = "scheduled-runs-webhook-secret"
YEARLY = "0 0 1 1 *"  # never due by itself during a test
CHANGED, ALWAYS = ({"source": "branch", "pattern": "main", "tags": ["{short_sha}"]},
                   {"source": "branch", "pattern": "main", "tags": ["nightly-{timestamp}"], "rebuild": "always"})


PREFIX = "acme/scheduled-"


@pytest.fixture(autouse=True)
def no_build_left(app):
    """The builds made here end with the test: a worker started later in the session must not run them."""
    yield
    end_builds(app, PREFIX)


def end_builds(app, prefix: str) -> None:
    with app.extensions["buildhook"].sessions() as session:
        session.execute(update(Build).where(Build.repository.startswith(prefix), Build.state.in_(ACTIVE))
                        .values(state="cancelled", finished_at=utcnow()))
        session.commit()


def make_trigger(client, repo, rules, prefix: str = PREFIX, **fields) -> dict:
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    answer = client.post("/api/triggers", json={
        "provider": "github", "repository": name, "clone_url": repo.url, "secret": SECRET, "image": name,
        "schedule": YEARLY, "rules": rules, **fields})
    assert answer.status_code == 201, answer.json
    return answer.json


def stored_build(app, trigger: dict, rule: int, sha: str, state: str = "queued", origin: str = "push",
                 before: str | None = None) -> int:
    """A build of ``sha`` on main by the trigger's rule ``rule`` (0-based) that no worker takes (marked
    sent now); a running one beats now."""
    now = utcnow()
    with app.extensions["buildhook"].sessions() as session:
        build = Build(
            trigger_id=trigger["id"], rule_id=rule_id(app, trigger, rule), provider="github",
            repository=trigger["repository"], clone_url=trigger["clone_url"], ref="refs/heads/main",
            ref_type="branch", ref_name="main", commit=sha, before=before, image=trigger["image"], tags=["main"],
            dockerfile="Dockerfile", context=".", state=state, origin=origin, dispatched_at=now,
            scheduled_for=now if origin == "schedule" else None,
            finished_at=now if state == "succeeded" else None,
            heartbeat_at=now if state == "building" else None, worker="test:1" if state == "building" else None)
        session.add(build)
        session.commit()
        return build.id


def rule_id(app, trigger: dict, position: int) -> int:
    with app.extensions["buildhook"].sessions() as session:
        return session.scalar(select(TriggerRule.id).where(TriggerRule.trigger_id == trigger["id"],
                                                           TriggerRule.position == position))


def scheduled_run(app, settings, trigger: dict) -> list[int]:
    with app.extensions["buildhook"].sessions() as session:
        return run_schedule(session, session.get(Trigger, trigger["id"]), settings, utcnow().replace(microsecond=0))


def test_a_due_time_skips_a_rule_whose_build_of_the_tip_is_already_queued_or_running(app, settings, client,
                                                                                     make_repo):
    repo = make_repo()
    sha = repo.commit({"README.md": "busy\n"})
    trigger = make_trigger(client, repo, [CHANGED, ALWAYS])
    pushed = stored_build(app, trigger, 0, sha)  # rule 1: a push of the tip, not started yet
    nightly = stored_build(app, trigger, 1, sha, origin="schedule")  # rule 2: the last due time's build

    assert scheduled_run(app, settings, trigger) == []
    [run] = schedule_deliveries(client, trigger["id"])
    assert run["outcome"] == "ignored" and run["builds"] == [], run
    assert f"rule 1: build #{pushed} of {sha[:7]} is already queued" in run["reason"]
    assert f"rule 2: build #{nightly} of {sha[:7]} is already queued" in run["reason"]
    assert [client.get(f"/api/builds/{i}").json["state"] for i in (pushed, nightly)] == ["queued", "queued"]

    with app.extensions["buildhook"].sessions() as session:  # a worker started the scheduled one
        session.execute(update(Build).where(Build.id == nightly).values(
            state="building", heartbeat_at=utcnow(), worker="test:1"))
        session.commit()
    assert scheduled_run(app, settings, trigger) == []
    latest = schedule_deliveries(client, trigger["id"])[0]
    assert f"rule 2: build #{nightly} of {sha[:7]} is already running" in latest["reason"], latest
    builds = client.get(f"/api/builds?trigger={trigger['id']}").json["builds"]
    assert sorted(b["id"] for b in builds) == [pushed, nightly]  # no build piled up per due time


def test_an_always_rule_builds_beside_a_queued_push_of_the_tip_and_supersedes_it(app, settings, client, make_repo):
    """Only a scheduled build fetches the base images again: a queued push build of the tip does not stop
    an "always" rule's scheduled build, which replaces it."""
    repo = make_repo()
    sha = repo.commit({"README.md": "base fixed\n"})
    trigger = make_trigger(client, repo, [ALWAYS])
    pushed = stored_build(app, trigger, 0, sha)

    [scheduled] = scheduled_run(app, settings, trigger)
    build = client.get(f"/api/builds/{scheduled}").json
    assert build["origin"] == "schedule" and build["commit"] == sha
    pushed_build = client.get(f"/api/builds/{pushed}").json
    assert pushed_build["state"] == "superseded", pushed_build
    assert schedule_deliveries(client, trigger["id"])[0]["outcome"] == "accepted"


def test_only_the_rules_that_build_supersede_older_queued_builds(app, settings, client, make_repo):
    """Both rules built the tip (pushed on top of ``older``) and each has a queued build of ``older``: the
    "always" rule's scheduled build supersedes its own; the skipped (unchanged) rule supersedes nothing."""
    repo = make_repo()
    older = repo.commit({"README.md": "older\n"})
    tip = repo.commit({"README.md": "tip\n"})
    trigger = make_trigger(client, repo, [CHANGED, ALWAYS])
    built = [stored_build(app, trigger, rule, tip, state="succeeded", before=older) for rule in (0, 1)]
    waiting = [stored_build(app, trigger, rule, older) for rule in (0, 1)]

    [scheduled] = scheduled_run(app, settings, trigger)
    new = client.get(f"/api/builds/{scheduled}").json
    assert new["origin"] == "schedule" and new["commit"] == tip, new
    with app.extensions["buildhook"].sessions() as session:
        assert session.get(Build, scheduled).rule_id == rule_id(app, trigger, 1)
    changed_rule, always_rule = (client.get(f"/api/builds/{i}").json for i in waiting)
    assert always_rule["state"] == "superseded", always_rule
    assert always_rule["reason"] == f"superseded by a newer push of {tip[:7]}"
    assert changed_rule["state"] == "queued", changed_rule  # its rule queued nothing this run
    run = schedule_deliveries(client, trigger["id"])[0]
    assert run["outcome"] == "accepted" and run["builds"] == [scheduled], run
    assert f"rule 1: {tip[:7]} is unchanged since build {built[0]}" in run["reason"]


def test_a_disabled_triggers_due_time_is_recorded_once_and_passes(app, settings, client, make_repo):
    trigger = make_trigger(client, make_repo(), [CHANGED])
    assert client.patch(f"/api/triggers/{trigger['id']}", json={"enabled": False}).status_code == 200
    due = utcnow().replace(microsecond=0) - timedelta(seconds=1)
    sessions = app.extensions["buildhook"].sessions
    with sessions() as session:
        session.execute(update(Trigger).where(Trigger.id == trigger["id"]).values(schedule_next_at=due))
        session.commit()
    sent: list[list[int]] = []

    run_due_schedules(sessions, settings, sent.append)
    run_due_schedules(sessions, settings, sent.append)  # the next pass: not due again
    [run] = schedule_deliveries(client, trigger["id"])
    assert run["outcome"] == "ignored" and run["builds"] == [], run
    assert run["reason"] == f"scheduled run of {due.strftime('%Y-%m-%d %H:%M')} UTC: trigger is disabled"
    assert sent == [] and client.get(f"/api/builds?trigger={trigger['id']}").json["builds"] == []
    with sessions() as session:
        assert session.scalar(select(Trigger.schedule_next_at).where(Trigger.id == trigger["id"])) > due
    assert client.get(f"/api/triggers/{trigger['id']}").json["schedule_next_at"] > due.isoformat()

    later = due + timedelta(seconds=0.5)  # the next due time passes too, still disabled: not recorded again
    with sessions() as session:
        session.execute(update(Trigger).where(Trigger.id == trigger["id"]).values(schedule_next_at=later))
        session.commit()
    run_due_schedules(sessions, settings, sent.append)
    assert [d["reason"] for d in schedule_deliveries(client, trigger["id"])] == [run["reason"]]
    with sessions() as session:
        assert session.scalar(select(Trigger.schedule_next_at).where(Trigger.id == trigger["id"])) > later
