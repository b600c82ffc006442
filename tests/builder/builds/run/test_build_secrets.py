"""Secret build args in the domain: stored sealed, kept, replaced and removed by edits, opened for a build
of the rule (``builder.builds.run.secret_args.secret_build_args``), never copied into a build's row."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from builder.builds.run.secret_args import secret_build_args
from builder.errors import InputError
from builder.intake.events import PushEvent
from builder.db.models import Base, Build, TriggerRule
from builder.intake.planning import plan_builds
from builder.triggers.rules import RuleSpec
from builder.secrets import SecretBox
from builder.settings import Settings
from builder.triggers.services import TriggerEdit, TriggerSpec, create_trigger, trigger_to_dict, update_trigger

BOX = SecretBox("build-secrets-test-key")
REGISTRY = "registry.example.com"
TOKEN = "npm-token-value-3f9a1c"


@pytest.fixture
def session():
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        yield session
    engine.dispose()


def spec(*rules: dict) -> TriggerSpec:
    return TriggerSpec(provider="github", repository="acme/widget", clone_url="https://git.example.com/acme/widget.git",
                       secret="hook-secret", image="acme/widget", rules=tuple(RuleSpec.from_json(r) for r in rules))


def build_of(session: Session, rule: TriggerRule | None) -> Build:
    build = Build(trigger_id=rule.trigger_id if rule else None, rule_id=rule.id if rule else None,
                  provider="github", repository="acme/widget", clone_url="file:///x", ref="refs/heads/main",
                  ref_type="branch", ref_name="main", commit="a" * 40, image="acme/widget", tags=["main"],
                  dockerfile="Dockerfile", context=".")
    session.add(build)
    session.flush()
    return build


def raw_column(session: Session, rule_id: int) -> str | None:
    return session.execute(text("SELECT secret_build_args_enc FROM trigger_rules WHERE id = :id"),
                           {"id": rule_id}).scalar()


def test_a_build_gets_its_rule_s_secret_build_args_decrypted(session):
    trigger = create_trigger(session, BOX, spec(
        {"source": "branch", "build_args": {"CHANNEL": "stable"},
         "secret_build_args": {"NPM_TOKEN": TOKEN, "PIP_INDEX_URL": "https://u:p@pypi.example/simple"}},
        {"source": "tag"}), REGISTRY)
    first, second = trigger.rules
    stored = raw_column(session, first.id)
    assert TOKEN not in stored and "u:p@" not in stored
    assert sorted(json.loads(stored)) == ["NPM_TOKEN", "PIP_INDEX_URL"]  # the names only, in clear
    assert secret_build_args(session, BOX, build_of(session, first)) == {
        "NPM_TOKEN": TOKEN, "PIP_INDEX_URL": "https://u:p@pypi.example/simple"}
    assert secret_build_args(session, BOX, build_of(session, second)) == {}
    assert secret_build_args(session, BOX, build_of(session, None)) == {}
    shown = trigger_to_dict(trigger, "http://buildhook.test")
    assert [r["secret_build_args"] for r in shown["rules"]] == [["NPM_TOKEN", "PIP_INDEX_URL"], []]
    assert TOKEN not in json.dumps(shown)
    with pytest.raises(ValueError, match="BUILDHOOK_SECRET_KEY"):
        secret_build_args(session, SecretBox("another-key"), build_of(session, first))


def test_a_build_whose_rule_is_gone_gets_none(session):
    trigger = create_trigger(session, BOX, spec({"source": "branch", "secret_build_args": {"NPM_TOKEN": TOKEN}}),
                             REGISTRY)
    build = build_of(session, trigger.rules[0])
    update_trigger(session, BOX, trigger, TriggerEdit.from_json({"rules": [
        {"source": "branch"}, {"source": "tag", "secret_build_args": {"OTHER": "x"}}]}), REGISTRY)
    assert secret_build_args(session, BOX, build) == {"NPM_TOKEN": TOKEN}  # same position: kept
    session.delete(session.get(TriggerRule, build.rule_id))
    session.flush()
    assert secret_build_args(session, BOX, build) == {}


def test_edits_replace_keep_and_remove_them(session):
    trigger = create_trigger(session, BOX, spec({"source": "branch", "secret_build_args": {"NPM_TOKEN": TOKEN}}),
                             REGISTRY)
    rule = trigger.rules[0]
    build = build_of(session, rule)

    def edit(**rule_fields) -> dict[str, str]:
        update_trigger(session, BOX, trigger, TriggerEdit.from_json({"rules": [{"source": "branch", **rule_fields}]}),
                       REGISTRY)
        assert trigger.rules[0].id == rule.id
        return secret_build_args(session, BOX, build)

    assert edit(tags=["{sha}"]) == {"NPM_TOKEN": TOKEN}  # absent: kept
    assert edit(secret_build_args=["NPM_TOKEN"]) == {"NPM_TOKEN": TOKEN}  # the names GET shows: kept
    assert edit(secret_build_args={"NPM_TOKEN": "new", "B": "b"}) == {"NPM_TOKEN": "new", "B": "b"}  # replaced
    assert edit(secret_build_args=["B"]) == {"B": "b"}  # the names left out are removed
    assert edit(secret_build_args=None) == {}  # null: removed
    assert raw_column(session, rule.id) is None
    with pytest.raises(InputError, match="has no value yet"):
        edit(secret_build_args=["NPM_TOKEN"])
    edit(secret_build_args={"NPM_TOKEN": TOKEN})
    with pytest.raises(InputError, match="both a build arg and a secret build arg"):
        edit(build_args={"NPM_TOKEN": "plain"})  # kept secret args are checked against new build args
    assert edit() == {"NPM_TOKEN": TOKEN}
    with pytest.raises(InputError, match="has no value yet"):
        create_trigger(session, BOX, spec({"source": "branch", "secret_build_args": ["NPM_TOKEN"]}), REGISTRY)


@pytest.mark.parametrize("given, words", [
    ({"1TOKEN": "x"}, "not a valid build arg name"),
    ({"NPM-TOKEN": "x"}, "not a valid build arg name"),
    ({"": "x"}, "not a valid build arg name"),
    ({"NPM_TOKEN": ""}, "needs a value"),
    ({"NPM_TOKEN": "a\0b"}, "NUL"),
    ({"NPM_TOKEN": "line one\nline two"}, "one line"),
    ({"NPM_TOKEN": 5}, "secret_build_args"),
    ("NPM_TOKEN=x", "secret_build_args"),
])
def test_bad_names_and_values_are_refused(given, words):
    with pytest.raises(InputError, match=words):
        RuleSpec.from_json({"source": "branch", "secret_build_args": given})


def test_planned_builds_never_carry_them(session):
    trigger = create_trigger(session, BOX, spec({"source": "branch", "build_args": {"CHANNEL": "stable"},
                                                 "secret_build_args": {"NPM_TOKEN": TOKEN}}), REGISTRY)
    event = PushEvent(provider="github", repository="acme/widget", ref="refs/heads/main", ref_type="branch",
                      ref_name="main", commit="b" * 40, author="someone", message="change")
    settings = Settings.from_env({"BUILDHOOK_SECRET_KEY": "k", "BUILDHOOK_REGISTRY": REGISTRY})
    plan = plan_builds(session, trigger, event, settings)
    [row] = plan.rows
    assert row["build_args"] == {"CHANNEL": "stable"}
    assert TOKEN not in repr(row) and "NPM_TOKEN" not in repr(row)
    session.add_all(plan.builds)
    session.flush()
    for stored in session.execute(select(Build.__table__)).all():
        assert TOKEN not in repr(tuple(stored))
