"""Intake keeps a repository's triggers and the subscriptions while unchanged, and sees a change at once.

Each web process (a gunicorn worker) keeps what intake read (``IntakeConfig``); a database trigger bumps
``intake_config_version`` in every transaction that changes triggers, their rules or subscriptions, so a
change made through another process is used by the very next delivery. On the suite's database
(SQLite, or PostgreSQL with BUILDHOOK_TEST_POSTGRES=1).
"""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import text

import builder.triggers.lookup as lookup
from builder.triggers.lookup import IntakeConfig
from tests.conftest import signed_in
from tests.payloads import add_github_trigger, github_headers, github_push
from webhooks import create_app

SECRET = "intake-config-secret"


@pytest.fixture
def other(settings, admin_token):
    """Another web process on the same database (as a second gunicorn worker is)."""
    app = create_app(settings)
    yield signed_in(app.test_client(), admin_token)
    app.extensions["buildhook"].engine.dispose()


@pytest.fixture
def trigger(client):
    return add_github_trigger(client, SECRET, "acme/config")


def push(client, trigger, secret=SECRET, ref="refs/heads/main"):
    body = json.dumps(github_push("push_branch", repository=trigger["repository"], ref=ref,
                                  sha=uuid.uuid4().hex + "0" * 8, clone_url=trigger["clone_url"])).encode()
    return client.post("/hooks/github", data=body, headers=github_headers(body, secret, "push", None))


def version(app) -> int:
    with app.extensions["buildhook"].engine.connect() as connection:
        return connection.execute(text("SELECT version FROM intake_config_version")).scalar_one()


CHANGES = {
    "its secret": ({"secret": "rotated"}, "rotated", 202, "accepted"),
    "the old secret after a change": ({"secret": "rotated"}, SECRET, 401, None),
    "disabled": ({"enabled": False}, SECRET, 202, "ignored"),
    "its rules": ({"rules": [{"source": "branch", "match": "exact", "pattern": "release", "tags": ["{sha}"]}]},
                  SECRET, 202, "ignored"),
}


@pytest.mark.parametrize("change, secret, status, outcome", CHANGES.values(), ids=CHANGES.keys())
def test_a_trigger_changed_in_another_process_is_what_the_next_delivery_meets(client, other, trigger, change,
                                                                              secret, status, outcome):
    assert push(client, trigger).json["outcome"] == "accepted"  # read and kept by this process
    assert other.patch(f"/api/triggers/{trigger['id']}", json=change).status_code == 200
    answer = push(client, trigger, secret)
    assert answer.status_code == status
    assert answer.json.get("outcome") == outcome


def test_a_trigger_deleted_in_another_process_is_gone_for_the_next_delivery(client, other, trigger):
    only_release = {"rules": [{"source": "branch", "match": "exact", "pattern": "release", "tags": ["{sha}"]}]}
    assert client.patch(f"/api/triggers/{trigger['id']}", json=only_release).status_code == 200
    # read and kept, but nothing built (a trigger with builds cannot be deleted)
    assert push(client, trigger).json["outcome"] == "ignored"
    assert other.delete(f"/api/triggers/{trigger['id']}").status_code in (200, 204)
    assert push(client, trigger).json["outcome"] == "no_trigger"


def test_a_trigger_added_in_another_process_takes_the_next_delivery(client, other):
    name = f"acme/config-late-{uuid.uuid4().hex[:8]}"
    late = {"repository": name, "clone_url": "file:///nonexistent/repo.git"}
    assert push(client, late).json["outcome"] == "no_trigger"
    assert other.post("/api/triggers", json={"provider": "github", "secret": SECRET, "image": name,
                                             **late}).status_code == 201
    assert push(client, late).json["outcome"] == "accepted"


def test_a_subscription_added_in_another_process_is_listened_for(app, client, other, trigger):
    config = IntakeConfig()
    with app.extensions["buildhook"].engine.connect() as connection:
        before = config.read(connection).subscriptions()
    made = other.post("/api/subscriptions", json={"url": "http://127.0.0.1:9/hook", "events": ["build.queued"],
                                                  "trigger": trigger["id"]})
    assert made.status_code == 201, made.json
    with app.extensions["buildhook"].engine.connect() as connection:
        after = config.read(connection).subscriptions()
    assert (["build.queued"], trigger["id"]) in after and (["build.queued"], trigger["id"]) not in before


@pytest.mark.parametrize("statement", [
    "UPDATE triggers SET image = image WHERE id = :trigger",
    "UPDATE trigger_rules SET tags = tags WHERE trigger_id = :trigger",
    "DELETE FROM trigger_rules WHERE trigger_id = :trigger",
    "INSERT INTO subscriptions (url_enc, url_redacted, events, trigger_id, style, enabled, created_at) "
    "VALUES ('x', 'x', '[]', :trigger, 'json', false, CURRENT_TIMESTAMP)",
    "DELETE FROM triggers WHERE id = :trigger",
], ids=["trigger updated", "rules updated", "rules deleted", "subscription added", "trigger deleted"])
def test_every_kind_of_change_bumps_the_version_whoever_writes_it(app, trigger, statement):
    """Written straight in SQL: the database bumps it, not the code that writes."""
    start = version(app)
    with app.extensions["buildhook"].engine.begin() as connection:
        connection.execute(text(statement), {"trigger": trigger["id"]})
    assert version(app) > start


def test_an_unchanged_repository_is_read_once_and_a_change_reads_it_again(app, trigger, monkeypatch):
    reads = []
    real = lookup.find_triggers
    monkeypatch.setattr(lookup, "find_triggers", lambda *args: reads.append(args[1:]) or real(*args))
    config = IntakeConfig()
    engine = app.extensions["buildhook"].engine
    for _ in range(3):
        with engine.connect() as connection:
            [found] = config.read(connection).triggers("github", trigger["repository"].upper())
            assert found.id == trigger["id"]
    assert len(reads) == 1
    with engine.begin() as connection:
        connection.execute(text("UPDATE triggers SET enabled = false WHERE id = :id"), {"id": trigger["id"]})
    with engine.connect() as connection:
        [found] = config.read(connection).triggers("github", trigger["repository"])
    assert len(reads) == 2 and found.enabled is False
