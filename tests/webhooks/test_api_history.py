"""GET /api/builds with the history page's filters, GET /api/overview, and a trigger's inbound
deliveries (GET /api/triggers/<id>/deliveries), as a script reading the API sees them."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import update

from builder.builds.overview import overview, overview_to_dict
from builder.db.models import Build, RetentionDeletion
from tests.payloads import fixture, github_headers, github_push

SECRET = "api-history-secret"
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def sessions(app):
    return app.extensions["buildhook"].sessions


def make_trigger(client, **extra: Any) -> dict:
    name = f"acme/api-history-{uuid.uuid4().hex[:8]}"
    created = client.post("/api/triggers", json={"provider": "github", "repository": name,
                                                 "clone_url": f"file:///{name}", "secret": SECRET, "image": name,
                                                 **extra})
    assert created.status_code == 201, created.json
    return created.json


def add_build(app, trigger: dict, **fields: Any) -> int:
    """A finished build as the worker leaves it (never queued: nothing for the session's worker to run)."""
    values: dict[str, Any] = dict(
        trigger_id=trigger["id"], provider="github", repository=trigger["repository"], clone_url=trigger["clone_url"],
        ref="refs/heads/main", ref_type="branch", ref_name="main", commit=uuid.uuid4().hex + "abcdefgh",
        image=trigger["image"], tags=["main"], dockerfile="Dockerfile", context=".", state="succeeded",
        created_at=NOW)
    values.update(fields)
    if "ref_name" in fields:
        values["ref"] = f"refs/{'tags' if values['ref_type'] == 'tag' else 'heads'}/{fields['ref_name']}"
    with sessions(app)() as session:
        build = Build(**values)
        session.add(build)
        session.commit()
        return build.id


def ids(response) -> list[int]:
    assert response.status_code == 200, response.json
    return [build["id"] for build in response.json["builds"]]


def test_builds_are_filtered_by_trigger_repository_ref_and_state(app, client):
    trigger, other = make_trigger(client), make_trigger(client)
    main_ok = add_build(app, trigger)
    feature_failed = add_build(app, trigger, ref_name="feature/x", state="failed", error="boom")
    tag_ok = add_build(app, trigger, ref_type="tag", ref_name="v1.2.0", tags=["v1.2.0"])
    cancelled = add_build(app, trigger, state="cancelled")
    elsewhere = add_build(app, other, state="failed")

    assert ids(client.get(f"/api/builds?trigger={trigger['id']}")) == [cancelled, tag_ok, feature_failed, main_ok]
    assert ids(client.get(f"/api/builds?repository={other['repository']}")) == [elsewhere]
    assert ids(client.get(f"/api/builds?trigger={trigger['id']}&ref=feature/x")) == [feature_failed]
    assert ids(client.get(f"/api/builds?trigger={trigger['id']}&ref=v1.2.0")) == [tag_ok]
    assert ids(client.get(f"/api/builds?trigger={trigger['id']}&state=failed")) == [feature_failed]
    # several states: repeated, or separated by commas
    assert ids(client.get(f"/api/builds?trigger={trigger['id']}&state=failed&state=cancelled")) == \
        [cancelled, feature_failed]
    assert ids(client.get(f"/api/builds?trigger={trigger['id']}&state=failed,cancelled")) == [cancelled, feature_failed]
    assert ids(client.get(f"/api/builds?repository={trigger['repository']}&ref=main&state=succeeded")) == [main_ok]
    build = client.get(f"/api/builds?trigger={trigger['id']}&state=failed").json["builds"][0]
    assert (build["state"], build["error"], build["ref_name"]) == ("failed", "boom", "feature/x")


def test_since_and_until_are_iso_8601_times_or_whole_days(app, client):
    trigger = make_trigger(client)
    base = NOW.replace(hour=12, minute=0, second=0) - timedelta(days=3)
    early = add_build(app, trigger, created_at=base - timedelta(hours=2))  # 10:00 UTC
    noon = add_build(app, trigger, created_at=base)  # 12:00 UTC
    late = add_build(app, trigger, created_at=base + timedelta(hours=5))  # 17:00 UTC
    next_day = add_build(app, trigger, created_at=base + timedelta(days=1))
    day = base.date().isoformat()
    query = f"/api/builds?trigger={trigger['id']}"

    assert ids(client.get(f"{query}&since={day}T12:00:00Z")) == [next_day, late, noon]
    assert ids(client.get(f"{query}&until={day}T12:00:00Z")) == [noon, early]  # inclusive
    assert ids(client.get(f"{query}&since={day}T11:00:00Z&until={day}T16:00:00Z")) == [noon]
    # an offset (here +02:00, sent as %2B or as a bare + that URLs turn into a space); no offset: UTC
    assert ids(client.get(f"{query}&since={day}T14:00:00%2B02:00&until={day}T14:00:00+02:00")) == [noon]
    assert ids(client.get(f"{query}&since={day}T16:59:59")) == [next_day, late]
    # a date alone is the whole day, like the page's date filters
    assert ids(client.get(f"{query}&since={day}&until={day}")) == [late, noon, early]
    assert ids(client.get(f"{query}&since={day}&until={day}&state=succeeded")) == [late, noon, early]


def test_filtered_builds_page_with_a_cursor(app, client):
    trigger = make_trigger(client)
    made = [add_build(app, trigger, state="failed" if n % 2 else "succeeded") for n in range(7)]
    failed = sorted((made[n] for n in range(7) if n % 2), reverse=True)  # 3 of them
    first = client.get(f"/api/builds?trigger={trigger['id']}&state=failed&limit=2").json
    assert [b["id"] for b in first["builds"]] == failed[:2] and first["next"] == failed[1]
    rest = client.get(f"/api/builds?trigger={trigger['id']}&state=failed&limit=2&before={first['next']}").json
    assert [b["id"] for b in rest["builds"]] == failed[2:] and rest["next"] is None
    exact = client.get(f"/api/builds?trigger={trigger['id']}&state=failed&limit=3").json
    assert len(exact["builds"]) == 3 and exact["next"] is None  # no empty last page to fetch


def test_bad_filter_values_are_a_400_that_says_what_is_wrong(client):
    for query, words in [
        ("state=exploded", "state"),
        ("state=failed,exploded", "exploded"),
        ("since=yesterday", "since"),
        ("until=2026-13-01", "until"),
        ("since=2026-02-02&until=2026-02-01", "since must not be after until"),
        ("trigger=abc", "trigger"),
        ("limit=-1", "limit"),
        ("limit=0", "'limit' must be a whole number from 1 to 500"),
        ("before=x", "before"),
    ]:
        response = client.get(f"/api/builds?{query}")
        assert response.status_code == 400, query
        assert words in response.json["error"] and response.json["status"] == 400, (query, response.json)


@pytest.mark.parametrize("listing", ["/api/builds", "/api/deployments", "/api/registry-events",
                                     "/api/retention-deletions", "/api/deliveries", "/api/audit"])
def test_every_listing_refuses_a_page_of_nothing_and_caps_a_large_one(client, listing):
    for bad in ("0", "abc", "-1"):
        refused = client.get(f"{listing}?limit={bad}")
        assert refused.status_code == 400 and "'limit' must be a whole number from 1 to 500" in refused.json["error"]
    assert client.get(f"{listing}?limit=100000").status_code == 200


def test_the_overview_has_the_overview_page_s_numbers(app, client):
    trigger = make_trigger(client)
    started = NOW - timedelta(minutes=30)
    add_build(app, trigger, state="succeeded", created_at=started - timedelta(seconds=4), started_at=started,
              finished_at=started + timedelta(seconds=90))
    add_build(app, trigger, state="failed", created_at=started, started_at=started + timedelta(seconds=2),
              finished_at=started + timedelta(seconds=30))
    asked = datetime.now(timezone.utc).date()
    answer = client.get("/api/overview")
    answered = datetime.now(timezone.utc).date()
    assert answer.status_code == 200
    numbers = answer.json
    with sessions(app)() as session:
        assert numbers == json.loads(json.dumps(overview_to_dict(overview(session))))
    # the last day is the one the answer was made on (a run across midnight UTC may see either)
    assert len(numbers["days"]) == 14 and numbers["days"][-1]["day"] in {asked.isoformat(), answered.isoformat()}
    assert numbers["total"] == sum(day["total"] for day in numbers["days"]) >= 2
    assert numbers["succeeded"] >= 1 and numbers["failed"] >= 1 and 0 < numbers["success_rate"] < 1
    page = client.get("/overview").text
    assert re.search(rf'id="stat-total">{numbers["total"]}<', page)
    assert f'{numbers["success_rate"] * 100:.0f}%' in page
    assert len(client.get("/api/overview?days=3").json["days"]) == 3
    assert client.get("/api/overview?days=91").status_code == 400


def send(client, trigger: dict, payload: dict, event: str = "push", secret: str = SECRET, delivery: str = ""):
    body = json.dumps(payload).encode()
    return client.post("/hooks/github", data=body, headers=github_headers(body, secret, event, delivery or None))


def test_a_trigger_s_recent_deliveries_show_outcome_reason_and_the_builds_started(app, client):
    trigger = make_trigger(client)
    ping = fixture("github/ping.json")
    ping["repository"]["full_name"] = trigger["repository"]
    push = github_push("push_branch", repository=trigger["repository"], ref="refs/heads/main", sha="a" * 40,
                       clone_url=trigger["clone_url"])
    try:
        assert send(client, trigger, ping, "ping", delivery="ping-1").status_code == 200
        accepted = send(client, trigger, push, delivery="push-2")
        assert accepted.status_code == 202 and accepted.json["outcome"] == "accepted"
        assert send(client, trigger, push, secret="wrong", delivery="forged-3").status_code == 401
        answer = client.get(f"/api/triggers/{trigger['id']}/deliveries")
        assert answer.status_code == 200 and answer.json["next"] is None
        shown = answer.json["deliveries"]
        assert [d["delivery"] for d in shown] == ["forged-3", "push-2", "ping-1"]  # newest first
        forged, pushed, pinged = shown
        assert (forged["outcome"], forged["status_code"], forged["trigger"], forged["builds"]) == \
            ("rejected", 401, None, [])
        assert "signature" in forged["reason"]
        assert (pushed["outcome"], pushed["status_code"], pushed["event"]) == ("accepted", 202, "push")
        assert pushed["builds"] == accepted.json["builds"] and pushed["trigger"] == trigger["id"]
        assert (pinged["outcome"], pinged["event"], pinged["status_code"]) == ("ping", "ping", 200)
        assert pinged["received_at"].startswith(NOW.date().isoformat()[:4])
        # a cursor page at a time
        first = client.get(f"/api/triggers/{trigger['id']}/deliveries?limit=2").json
        assert [d["delivery"] for d in first["deliveries"]] == ["forged-3", "push-2"]
        rest = client.get(f"/api/triggers/{trigger['id']}/deliveries?limit=2&before={first['next']}").json
        assert [d["delivery"] for d in rest["deliveries"]] == ["ping-1"] and rest["next"] is None
        assert client.get("/api/triggers/987654321/deliveries").status_code == 404
    finally:
        with sessions(app)() as session:  # nothing left queued for the session's worker
            session.execute(update(Build).where(Build.trigger_id == trigger["id"], Build.state == "queued")
                            .values(state="superseded", reason="test_api_history: never run"))
            session.commit()


def test_retention_records_page_with_next_and_filter_by_any_of_several_outcomes(app, client):
    trigger = make_trigger(client)
    outcomes = ["deleted", "kept", "refused", "deleted", "missing", "kept", "deleted"]
    with sessions(app)() as session:
        rows = [RetentionDeletion(kind="tag", trigger_id=trigger["id"], repository="127.0.0.1:5000/acme/app",
                                  tag=f"tag{n}", outcome=outcome) for n, outcome in enumerate(outcomes)]
        session.add_all(rows)
        session.commit()
    base = f"/api/retention-deletions?trigger={trigger['id']}"

    pages, cursor = [], None
    while True:
        answer = client.get(base + "&limit=3" + (f"&before={cursor}" if cursor else "")).json
        pages.append([row["tag"] for row in answer["retention_deletions"]])
        cursor = answer["next"]
        if cursor is None:
            break
    assert pages == [["tag6", "tag5", "tag4"], ["tag3", "tag2", "tag1"], ["tag0"]]

    either = client.get(base + "&outcome=kept&outcome=refused").json
    assert [row["tag"] for row in either["retention_deletions"]] == ["tag5", "tag2", "tag1"]
    assert either["next"] is None
    for query, words in [("outcome=kept&outcome=gone", "outcome must be one of"), ("before=x", "before")]:
        refused = client.get(f"{base}&{query}")
        assert refused.status_code == 400 and words in refused.json["error"], query
