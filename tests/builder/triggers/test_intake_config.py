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


VERSION = text("SELECT version FROM intake_config_version")
SUBSCRIPTION = ("INSERT INTO subscriptions (url_enc, url_redacted, events, trigger_id, style, enabled, created_at) "
                "VALUES ('x', 'x', '[]', :trigger, 'json', false, CURRENT_TIMESTAMP)")


def bumps(app, statement: str, values: dict, setup: str | None = None) -> bool:
    """Whether ``statement``, run straight in SQL (the database bumps, not the code that writes), bumps
    the version in its own transaction; rolled back afterwards, so the suite's database stays as it was."""
    with app.extensions["buildhook"].engine.connect() as connection, connection.begin() as transaction:
        if setup:
            connection.execute(text(setup), values)
        start = connection.execute(VERSION).scalar_one()
        connection.execute(text(statement), values)
        bumped = connection.execute(VERSION).scalar_one() > start
        transaction.rollback()
    return bumped


READ_COLUMNS = [("triggers", "id", name) for name in lookup._HOOK_TRIGGER_COLUMNS if name != "id"] + \
    [("trigger_rules", "trigger_id", name) for name in lookup._HOOK_RULE_COLUMNS if name != "id"] + \
    [("subscriptions", "trigger_id", name) for name in ("events", "trigger_id", "enabled")]


@pytest.mark.parametrize("table, key, column", READ_COLUMNS, ids=[f"{t}.{c}" for t, _, c in READ_COLUMNS])
def test_an_update_of_any_column_intake_reads_bumps_the_version(app, trigger, table, key, column):
    """Derived from what intake reads: a column added to HookTrigger or HookRule without its bump fails here."""
    assert bumps(app, f'UPDATE {table} SET "{column}" = "{column}" WHERE {key} = :trigger', {"trigger": trigger["id"]},
                 setup=SUBSCRIPTION if table == "subscriptions" else None)


@pytest.mark.parametrize("statement", [
    SUBSCRIPTION,
    "DELETE FROM trigger_rules WHERE trigger_id = :trigger",
    "DELETE FROM triggers WHERE id = :trigger",
], ids=["subscription added", "rules deleted", "trigger deleted"])
def test_rows_added_or_deleted_bump_the_version(app, trigger, statement):
    assert bumps(app, statement, {"trigger": trigger["id"]})


@pytest.mark.parametrize("statement", [
    "UPDATE trigger_rules SET retention_lease_until = CURRENT_TIMESTAMP WHERE trigger_id = :trigger",
    "UPDATE triggers SET schedule_next_at = CURRENT_TIMESTAMP WHERE id = :trigger",
    "UPDATE triggers SET enabled = false WHERE id = -1",
], ids=["a retention lease", "a schedule's next run", "no row"])
def test_writes_that_change_nothing_intake_reads_leave_the_version(app, trigger, statement):
    """Workers take retention leases and claim schedules all the time: the web processes keep their rows."""
    assert not bumps(app, statement, {"trigger": trigger["id"]})


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


def test_rows_read_before_a_change_are_never_kept_for_deliveries_after_it(app, trigger, monkeypatch):
    """Threads interleave: one read the old number and fetched the old rows, then stores them late."""
    config = IntakeConfig()
    engine = app.extensions["buildhook"].engine
    with engine.connect() as connection:
        slow = config.read(connection)  # a delivery that read the number before the change ...
        old_rows = lookup.find_triggers(connection, "github", trigger["repository"])  # ... and its rows
        assert old_rows[0].enabled is True
    with engine.begin() as connection:
        connection.execute(text("UPDATE triggers SET enabled = false WHERE id = :id"), {"id": trigger["id"]})
    with engine.connect() as connection:
        fresh = config.read(connection)  # a delivery after the change
        real_version = lookup._VERSION.rows
        monkeypatch.setattr(lookup._VERSION, "rows", lambda _connection: [(slow.version,)])
        late = config.read(connection)  # another that read the old number but reaches the lock only now
        monkeypatch.setattr(lookup._VERSION, "rows", real_version)
        monkeypatch.setattr(lookup, "find_triggers", lambda *args: old_rows)
        for stale in (slow, late):  # each stores the old rows it fetched, as late as can be
            assert stale.triggers("github", trigger["repository"]) == old_rows
        monkeypatch.undo()
        assert [t.enabled for t in fresh.triggers("github", trigger["repository"])] == [False]
        assert [t.enabled for t in config.read(connection).triggers("github", trigger["repository"])] == [False]


def test_subscriptions_are_read_once_while_unchanged(app, monkeypatch):
    reads = []
    real = lookup._subscription_rows
    monkeypatch.setattr(lookup, "_subscription_rows", lambda connection: reads.append(1) or real(connection))
    config = IntakeConfig()
    with app.extensions["buildhook"].engine.connect() as connection:
        first = config.read(connection).subscriptions()
        assert config.read(connection).subscriptions() == first
    assert len(reads) == 1


def test_a_repository_without_triggers_is_not_kept(app, monkeypatch):
    reads = []
    real = lookup.find_triggers
    monkeypatch.setattr(lookup, "find_triggers", lambda *args: reads.append(1) or real(*args))
    config = IntakeConfig()
    with app.extensions["buildhook"].engine.connect() as connection:
        for _ in range(2):
            assert config.read(connection).triggers("github", f"nobody/{uuid.uuid4().hex}") == []
    assert len(reads) == 2
