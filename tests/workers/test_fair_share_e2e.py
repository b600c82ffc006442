"""A trigger's max_concurrent on the real worker: one build of it at a time, the rest queued in order with
their place shown, and no worker held by a build that waits."""

from __future__ import annotations

import time
import uuid

from tests.builder.builds.test_scheduled_runs import end_builds, stored_build
from tests.conftest import busybox_dockerfile, finished_build, wait_for
from tests.workers.test_pipeline_e2e import SECRET, push

RUNNING = {"cloning", "building", "pushing"}
SLOW = "RUN sleep 4\n"


def make_trigger(client, make_repo, name, **fields):
    repo = make_repo(busybox_dockerfile(uuid.uuid4().hex, SLOW), name=name)
    suffix = uuid.uuid4().hex[:8]
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": f"acme/{name}-{suffix}", "clone_url": repo.url, "secret": SECRET,
        "image": f"acme/{name}-{suffix}", "rules": [{"source": "branch", "tags": ["{branch}"]}], **fields})
    assert trigger.status_code == 201, trigger.json
    return repo, trigger.json


def test_builds_past_the_limit_wait_in_order_without_holding_a_worker(client, worker, make_repo):
    repo, limited = make_trigger(client, make_repo, "limited", max_concurrent=1)
    assert limited["max_concurrent"] == 1
    sha = repo.commit({"README.md": "one\n"})
    ids = [push(client, limited, f"refs/heads/b{n}", sha).json["builds"][0] for n in (1, 2, 3)]

    wait_for(lambda: client.get(f"/api/builds/{ids[0]}").json["state"] in RUNNING, 60, "the first build to start")
    second, third = (client.get(f"/api/builds/{i}").json for i in ids[1:])
    assert second["state"] == third["state"] == "queued"
    assert second["queue"] == {"ahead": 0, "limit": 1, "running": 1, "text": "0 ahead; trigger limit 1 (1 running)"}
    assert third["queue"]["text"] == "1 ahead; trigger limit 1 (1 running)"
    page = client.get(f"/builds/{ids[2]}").get_data(as_text=True)
    assert "Waiting in the queue: 1 ahead; trigger limit 1 (1 running)" in page

    # Another trigger's build gets a worker meanwhile: the waiting builds hold none (the worker has 2).
    other_repo, other = make_trigger(client, make_repo, "other")
    other_id = push(client, other, "refs/heads/main", other_repo.commit({"README.md": "x\n"})).json["builds"][0]
    other_build = finished_build(client, other_id)
    assert other_build["state"] == "succeeded"

    builds = [finished_build(client, i, timeout=180) for i in ids]
    assert [b["state"] for b in builds] == ["succeeded"] * 3
    assert builds[0]["queue"] is None
    for earlier, later in zip(builds, builds[1:]):
        assert earlier["finished_at"] <= later["cloning_at"], "two builds of the trigger ran at once"
    # It got a worker while the limited trigger's last build still waited (it started, not finished, first:
    # how long it then takes depends on the machine).
    assert other_build["cloning_at"] < builds[2]["cloning_at"], "the other trigger's build waited for the limited one"


def test_a_build_under_its_triggers_limit_says_it_waits_for_a_worker(app, client, make_repo):
    """Builds of a trigger with max_concurrent 2, one running: the first queued one may start and only
    waits for a free worker; the second is held back by the limit. Neither is sent to a worker here."""
    repo, limited = make_trigger(client, make_repo, "waits", max_concurrent=2)
    sha = repo.commit({"README.md": "two at a time\n"})
    try:
        stored_build(app, limited, 0, sha, state="building")
        under, held = (stored_build(app, limited, 0, sha) for _ in range(2))
        place = client.get(f"/api/builds/{under}").json["queue"]
        assert place["text"] == f"{place['ahead']} ahead; waiting for a worker", place
        assert (place["limit"], place["running"]) == (2, 1)
        assert f"Waiting in the queue: {place['ahead']} ahead; waiting for a worker" in \
            client.get(f"/builds/{under}").get_data(as_text=True)
        assert client.get(f"/api/builds/{held}").json["queue"] == {
            "ahead": 1, "limit": 2, "running": 1, "text": "1 ahead; trigger limit 2 (1 running)"}
        assert "Waiting in the queue: 1 ahead; trigger limit 2 (1 running)" in \
            client.get(f"/builds/{held}").get_data(as_text=True)
    finally:
        end_builds(app, limited["repository"])


def test_max_concurrent_is_checked_and_can_be_changed(client, make_repo):
    repo = make_repo()
    base = {"provider": "github", "repository": f"acme/mc-{uuid.uuid4().hex[:8]}", "clone_url": repo.url,
            "secret": SECRET, "image": "acme/mc"}
    for bad in (0, -1, "2", True, 1001):
        answer = client.post("/api/triggers", json={**base, "max_concurrent": bad})
        assert answer.status_code == 400, answer.json
        assert answer.json["error"] == "max_concurrent must be a whole number from 1 to 1000, or null for no limit"
    made = client.post("/api/triggers", json=base).json
    assert made["max_concurrent"] is None
    changed = client.patch(f"/api/triggers/{made['id']}", json={"max_concurrent": 3})
    assert changed.status_code == 200 and changed.json["max_concurrent"] == 3
    assert client.patch(f"/api/triggers/{made['id']}", json={"max_concurrent": None}).json["max_concurrent"] is None


def test_a_raised_limit_starts_a_waiting_build_that_a_worker_handed_back(app, client, worker, make_repo):
    """The webhook's send is marked a moment after the worker handed the build back: the mark must not hide
    it from the relay, which sends it as soon as the raised limit lets it start."""
    from sqlalchemy import select

    from builder.builds.fair_share import RELEASED
    from builder.db.models import Build

    repo = make_repo(busybox_dockerfile(uuid.uuid4().hex, "RUN sleep 15\n"), name="raised")
    suffix = uuid.uuid4().hex[:8]
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": f"acme/raised-{suffix}", "clone_url": repo.url, "secret": SECRET,
        "image": f"acme/raised-{suffix}", "rules": [{"source": "branch", "tags": ["{branch}"]}],
        "max_concurrent": 1}).json
    sha = repo.commit({"README.md": "one\n"})
    first, second = (push(client, trigger, f"refs/heads/r{n}", sha).json["builds"][0] for n in (1, 2))
    wait_for(lambda: client.get(f"/api/builds/{first}").json["state"] in RUNNING, 60, "the first build to start")

    def handed_back() -> bool:
        with app.extensions["buildhook"].sessions() as session:
            return session.scalar(select(Build.dispatched_at).where(Build.id == second)) == RELEASED

    wait_for(handed_back, 30, "the worker to hand the waiting build back")
    time.sleep(1)  # the webhook's batched dispatch marks are written by now
    assert handed_back(), "the late mark of the webhook's send hid the handed-back build from the relay"

    assert client.patch(f"/api/triggers/{trigger['id']}", json={"max_concurrent": 2}).status_code == 200
    wait_for(lambda: client.get(f"/api/builds/{second}").json["state"] in RUNNING, 20,
             "the waiting build to start once the limit allows it")
    assert client.get(f"/api/builds/{first}").json["state"] in RUNNING, "both run at once under the new limit"
