"""Schedules on the real worker: a due time rebuilds the default branch's tip once, marked scheduled; an
unchanged tip is skipped with the reason unless the rule says "rebuild": "always"."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

from sqlalchemy import select, update

from builder.db.models import Trigger, utcnow
from builder.builds.scheduled_runs import claim_due
from tests.conftest import finished_build, wait_for
from tests.workers.test_pipeline_e2e import SECRET

YEARLY = "0 0 1 1 *"  # never due by itself during a test


def make_due(app, trigger_id: int):
    """Time passes: the trigger's next due time is now a second ago. Returns that due time."""
    due = utcnow().replace(microsecond=0) - timedelta(seconds=1)
    with app.extensions["buildhook"].sessions() as session:
        session.execute(update(Trigger).where(Trigger.id == trigger_id).values(schedule_next_at=due))
        session.commit()
    return due


def schedule_deliveries(client, trigger_id: int) -> list[dict]:
    return [d for d in client.get(f"/api/triggers/{trigger_id}/deliveries").json["deliveries"]
            if d["event"] == "schedule"]


def test_a_due_schedule_builds_the_tip_once_and_skips_it_unchanged_unless_rebuild_always(client, app, worker,
                                                                                          make_repo):
    repo = make_repo()
    repo.commit({"README.md": "scheduled\n"})
    name = f"acme/nightly-{uuid.uuid4().hex[:8]}"
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": name, "clone_url": repo.url, "secret": SECRET, "image": name,
        "schedule": YEARLY, "rules": [
            {"source": "branch", "pattern": "main", "tags": ["{short_sha}"]},
            {"source": "branch", "pattern": "main", "tags": ["nightly-{timestamp}"], "rebuild": "always"}]})
    assert trigger.status_code == 201, trigger.json
    trigger = trigger.json
    assert trigger["schedule"] == YEARLY and trigger["schedule_next_at"].endswith("-01-01T00:00:00+00:00")
    assert [r["rebuild"] for r in trigger["rules"]] == ["changed", "always"]

    due = make_due(app, trigger["id"])
    first = wait_for(lambda: schedule_deliveries(client, trigger["id"]) or None, 30, "the scheduled run")
    assert len(first) == 1 and first[0]["outcome"] == "accepted", first
    builds = [finished_build(client, build_id) for build_id in first[0]["builds"]]
    assert [b["state"] for b in builds] == ["succeeded", "succeeded"]
    assert all(b["scheduled_for"] == due.isoformat() and b["ref_name"] == "main" for b in builds)
    assert all(b["origin"] == "schedule" for b in builds)  # the build page says "scheduled"
    assert client.get(f"/api/triggers/{trigger['id']}").json["schedule_next_at"] > due.isoformat()
    assert "Scheduled run of" in client.get(f"/builds/{builds[0]['id']}").get_data(as_text=True)

    make_due(app, trigger["id"])  # the tip has not changed since
    runs = wait_for(lambda: len(schedule_deliveries(client, trigger["id"])) == 2
                    and schedule_deliveries(client, trigger["id"]), 30, "the second scheduled run")
    second = runs[0]
    assert len(second["builds"]) == 1, second
    assert f"rule 1: {builds[0]['short_sha']} is unchanged since build {builds[0]['id']}" in second["reason"]
    again = finished_build(client, second["builds"][0])
    assert again["rule"] == builds[1]["rule"] and again["state"] == "succeeded"


def test_a_due_time_is_claimed_by_one_of_many_workers(app, client, make_repo):
    repo = make_repo()
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": f"acme/race-{uuid.uuid4().hex[:8]}", "clone_url": repo.url,
        "secret": SECRET, "image": "acme/race", "schedule": YEARLY}).json
    due = make_due(app, trigger["id"])
    sessions = app.extensions["buildhook"].sessions
    wins: list[bool] = []
    start = threading.Barrier(8)

    def race() -> None:
        start.wait()
        wins.append(claim_due(sessions, trigger["id"], due, YEARLY))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == [False] * 7 + [True]
    with sessions() as session:
        assert session.scalar(select(Trigger.schedule_next_at).where(Trigger.id == trigger["id"])) > due


def test_a_schedule_is_checked_when_the_trigger_is_made_and_edited(client, make_repo):
    repo = make_repo()
    base = {"provider": "github", "repository": f"acme/cron-{uuid.uuid4().hex[:8]}", "clone_url": repo.url,
            "secret": SECRET, "image": "acme/cron"}
    for bad in ("* * * *", "61 * * * *", "0 0 0 * * *", 5):
        answer = client.post("/api/triggers", json={**base, "schedule": bad})
        assert answer.status_code == 400 and "schedule" in answer.json["error"], answer.json
    long = ",".join(["1"] * 20_000) + " * * * *"  # valid cron, longer than the column holds
    answer = client.post("/api/triggers", json={**base, "schedule": long})
    assert answer.status_code == 400 and "is longer than 255 characters" in answer.json["error"], answer.json
    assert len(answer.json["error"]) < 300, "the refusal does not echo the whole expression"
    made = client.post("/api/triggers", json=base).json
    assert made["schedule"] is None and made["schedule_next_at"] is None
    edited = client.patch(f"/api/triggers/{made['id']}", json={"schedule": "30 2 * * 1-5"}).json
    assert edited["schedule"] == "30 2 * * 1-5" and "T02:30:00+00:00" in edited["schedule_next_at"]
    rule = client.post("/api/triggers", json={**base, "rules": [{"source": "branch", "rebuild": "sometimes"}]})
    assert rule.status_code == 400 and "rebuild" in rule.json["error"]
    rules = [{"source": "tag"}, {"source": "branch", "rebuild": True}]
    second = client.post("/api/triggers", json={**base, "rules": rules})
    assert second.json["error"] == "rule 2: rule field 'rebuild' must be one of always, changed, not true"
    rules = [{"source": "branch", "tags": ["{sha}"], "retention": {"keep": 0}}]
    kept = client.patch(f"/api/triggers/{made['id']}", json={"rules": rules})
    assert kept.status_code == 400 and kept.json["error"] == "rule 1: retention keep must be between 1 and 10000"
