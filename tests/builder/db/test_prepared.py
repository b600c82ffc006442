"""Prepared statements give the rows ``Connection.execute`` gives, on the suite's database.

SQLite, or PostgreSQL with BUILDHOOK_TEST_POSTGRES=1: JSON, booleans, datetimes and NULLs come back
as Python values, through the columns' types, whatever the driver returns for them.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import bindparam, literal, select

from builder.db.models import Build, Trigger, TriggerRule
from builder.db.prepared import Inserts, Prepared
from builder.triggers.lookup import find_triggers


@pytest.fixture
def trigger(client):
    repository = f"acme/prepared-{uuid.uuid4().hex[:8]}"
    created = client.post("/api/triggers", json={
        "provider": "github", "repository": repository, "clone_url": "file:///never-cloned", "secret": "s",
        "image": repository, "supersede": False, "rules": [
            {"source": "branch", "match": "exact", "pattern": "main", "tags": ["latest", "{sha}"],
             "build_args": {"MODE": "prod", "EMPTY": ""}, "included_files": ["src/**"]},
            {"source": "tag", "tags": ["{tag}"], "push": False},
        ]})
    assert created.status_code == 201, created.json
    return created.json


STATEMENTS = {
    "rules, with JSON and booleans": select(TriggerRule.id, TriggerRule.tags, TriggerRule.build_args,
                                            TriggerRule.included_files, TriggerRule.push, TriggerRule.target)
    .where(TriggerRule.trigger_id == bindparam("trigger_id")).order_by(TriggerRule.position),
    "the trigger, with a datetime": select(Trigger.id, Trigger.created_at, Trigger.enabled, Trigger.supersede)
    .where(Trigger.id == bindparam("trigger_id")),
    "a fixed list of values": select(TriggerRule.id).where(
        TriggerRule.trigger_id == bindparam("trigger_id"),
        TriggerRule.source.in_([literal("branch"), literal("tag")])).order_by(TriggerRule.id),
}


@pytest.mark.parametrize("name", STATEMENTS)
def test_rows_are_those_execute_gives(app, trigger, name):
    statement = STATEMENTS[name]
    with app.extensions["buildhook"].engine.connect() as connection:
        expected = [tuple(row) for row in connection.execute(statement, {"trigger_id": trigger["id"]})]
        assert expected, "the statement finds the trigger's rows"
        assert Prepared(statement).rows(connection, {"trigger_id": trigger["id"]}) == expected


def test_the_trigger_lookup_reads_its_rules_as_stored(app, trigger):
    with app.extensions["buildhook"].engine.connect() as connection:
        [found] = find_triggers(connection, "github", trigger["repository"].upper())
    first, second = found.rules
    assert (found.id, found.enabled, found.supersede) == (trigger["id"], True, False)
    assert (first.tags, first.build_args, first.included_files, first.push) == \
        (["latest", "{sha}"], {"MODE": "prod", "EMPTY": ""}, ["src/**"], True)
    assert (second.source, second.tags, second.push) == ("tag", ["{tag}"], False)


@pytest.mark.parametrize("where", [Build.id.in_(bindparam("ids", expanding=True)), Build.state.in_(["queued"])])
def test_a_list_expanded_per_call_is_refused_when_the_statement_is_made(where):
    with pytest.raises(ValueError, match="expand"):
        Prepared(select(Build.id).where(where))


def test_an_insert_gives_the_columns_left_out_their_defaults(app, trigger):
    """As ``execute`` would: ``origin`` its scalar default, ``tags`` and ``created_at`` their callables' values."""
    inserts = Inserts(Build.__table__, lambda insert: insert.returning(Build.__table__.c.id))
    engine = app.extensions["buildhook"].engine
    row = {"trigger_id": trigger["id"], "provider": "github", "repository": trigger["repository"],
           "clone_url": "file:///never-cloned", "ref": "refs/heads/main", "ref_type": "branch", "ref_name": "main",
           "commit": "d" * 40, "image": trigger["repository"], "dockerfile": "Dockerfile", "context": ".",
           "state": "superseded"}
    with engine.begin() as connection:
        [(build_id,)] = inserts.rows(connection, row)
    with app.extensions["buildhook"].sessions() as session:
        build = session.get(Build, build_id)
        assert (build.origin, build.tags, build.build_args, build.attempts, build.push) == ("push", [], {}, 0, True)
        assert build.created_at is not None and build.state == "superseded"


def test_a_value_left_out_is_an_error_not_a_null(app):
    prepared = Prepared(select(Trigger.id).where(Trigger.id == bindparam("trigger_id")))
    with app.extensions["buildhook"].engine.connect() as connection, pytest.raises(ValueError, match="trigger_id"):
        prepared.rows(connection, {})
