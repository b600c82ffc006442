"""Commit order at intake: the builds a push is linked to by its payloads' before -> commit chain.

Against the suite's database (SQLite, or PostgreSQL with BUILDHOOK_TEST_POSTGRES=1), with builds
written as intake writes them: a branch with hundreds of queued builds whose order the payloads
cannot settle, and a chain among them.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import delete, insert, select, text

from builder.builds.commit_order import _OF_COMMIT, _ON_TOP_OF, Order, chain_links, chain_order, chain_siblings
from builder.db.models import Build, TriggerRule, utcnow

REF = "refs/heads/main"


def sha() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex[:8]


@pytest.fixture
def branch(app, client):
    """A trigger's rule whose branch has 300 unrelated queued builds. They are marked sent, so the
    suite's worker is not handed them, and removed afterwards."""
    repository = f"acme/order-{uuid.uuid4().hex[:8]}"
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": repository, "clone_url": "file:///never-cloned",
        "secret": "s", "image": repository}).json
    sessions = app.extensions["buildhook"].sessions
    with sessions() as session:
        rule_id = session.scalar(select(TriggerRule.id).where(TriggerRule.trigger_id == trigger["id"]))
    add = _writer(sessions, trigger["id"], rule_id)
    add([{"commit": sha(), "before": sha()} for _ in range(300)])
    yield sessions, rule_id, add
    with sessions() as session:
        session.execute(delete(Build).where(Build.trigger_id == trigger["id"]))
        session.commit()
    client.delete(f"/api/triggers/{trigger['id']}")


def _writer(sessions, trigger_id: int, rule_id: int):
    def add(builds: list[dict]) -> list[int]:
        now = utcnow()
        rows = [{"trigger_id": trigger_id, "rule_id": rule_id, "provider": "github", "repository": "r",
                 "clone_url": "file:///never-cloned", "ref": REF, "ref_type": "branch", "ref_name": "main",
                 "image": "r", "tags": ["main"], "dockerfile": "Dockerfile", "context": ".", "state": "queued", "attempts": 0, "created_at": now,
                 "build_args": {}, "dispatched_at": now, **build} for build in builds]
        with sessions() as session:
            ids = [session.execute(insert(Build.__table__), row).inserted_primary_key[0] for row in rows]
            session.commit()
        return ids

    return add


def test_a_push_finds_only_the_builds_its_chain_links_it_to(branch):
    sessions, rule_id, add = branch
    a, b, c, d = sha(), sha(), sha(), sha()
    # a <- b <- c on the branch (b failed: not active, so it links nothing); d is on top of the new push
    first, _failed, third, on_top = add([{"commit": a, "before": sha()}, {"commit": b, "before": a, "state": "failed"},
                                         {"commit": c, "before": b}, {"commit": d, "before": "e" * 40}])
    new = "e" * 40
    with sessions() as session:
        found = chain_siblings(session, rule_id, REF, new, c)
        assert {s.id for s in found} == {third, on_top}, "the failed build breaks the chain to the first"
        links = chain_links(found)
        orders = {s.id: chain_order(new, c, s, links) for s in found}
        assert orders == {third: Order.NEWER, on_top: Order.OLDER}
        assert {s.id for s in chain_siblings(session, rule_id, REF, a, None)} == {first}


def test_other_pushes_on_the_same_parent_are_not_on_the_chain(branch):
    """Pushes on top of one commit (force pushes, or payloads all naming the same ``before``) cannot be
    ordered by the payloads: none of them is read."""
    sessions, rule_id, add = branch
    parent = sha()
    add([{"commit": sha(), "before": parent} for _ in range(50)])
    with sessions() as session:
        assert chain_siblings(session, rule_id, REF, sha(), parent) == []


def test_a_chain_through_the_last_successful_build_is_followed(branch):
    sessions, rule_id, add = branch
    a, b = sha(), sha()
    queued, succeeded = add([{"commit": a, "before": sha()}, {"commit": b, "before": a, "state": "succeeded"}])
    with sessions() as session:
        found = chain_siblings(session, rule_id, REF, sha(), b)
        assert {s.id for s in found} == {succeeded, queued}


def test_walks_sharing_their_answers_find_the_same_builds_and_ask_each_link_once(branch, monkeypatch):
    """The dispatcher weighs a burst's queued builds in one batch: a chain of 20, each walk passing the
    links of those before it. Shared answers give each walk what it finds alone, for one query per link."""
    sessions, rule_id, add = branch
    commits = [sha() for _ in range(21)]
    add([{"commit": commit, "before": before} for before, commit in zip(commits, commits[1:])])
    pushes = list(zip(commits[1:], commits))
    asked: list[str] = []
    for statement in (_OF_COMMIT, _ON_TOP_OF):
        rows = statement.rows
        monkeypatch.setattr(statement, "rows", lambda connection, values, rows=rows: asked.append(values["link"])
                            or rows(connection, values))

    def walks(answers: dict | None) -> tuple[list[set[int]], int]:
        asked.clear()
        with sessions() as session:
            return [{s.id for s in chain_siblings(session, rule_id, REF, c, b, answers)} for c, b in pushes], len(asked)

    (alone, asked_alone), (shared, asked_shared) = walks(None), walks({})
    assert shared == alone and all(len(found) == 20 for found in alone), "every walk reaches the whole chain"
    assert asked_alone > 20 * 20 / 2, "alone, each walk asks again for the links of the chain behind it"
    assert asked_shared <= 2 * len(commits), "shared, each link is asked for once, back and forward"


def test_each_link_is_read_through_an_index_of_its_own(app, branch):
    """Whatever the number of queued builds of the ref, a link costs two index lookups."""
    sessions, _rule_id, _add = branch
    with sessions() as session:
        if session.bind.dialect.name != "sqlite":
            pytest.skip("the query plan checked here is SQLite's")
        plans = []
        for prepared in (_OF_COMMIT, _ON_TOP_OF):
            step = prepared.statement.params(rule_id=1, ref=REF, link="a" * 40)
            sql = str(step.compile(dialect=session.bind.dialect, compile_kwargs={"literal_binds": True}))
            plans.append(" | ".join(row[-1] for row in session.execute(text(f"EXPLAIN QUERY PLAN {sql}"))))
    assert "ix_builds_rule_ref_commit" in plans[0] and "ix_builds_rule_ref_before" in plans[1], plans
