"""Group commit of accepted deliveries: many requests' rows, one transaction, nothing lost or doubled.

Against the suite's database (SQLite, or PostgreSQL with BUILDHOOK_TEST_POSTGRES=1): concurrent
signed GitHub pushes through the webhook endpoint, replays among them, and batches with a
write that cannot be stored.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, wait

import pytest
from sqlalchemy import event, func, select

from builder.db.engine import WriteLockTimeout, make_engine, make_sessionmaker, migrate
from builder.db.group_commit import DeliveryWrite, GroupCommit, commit_batch
from builder.db.models import Build, Delivery, TriggerRule, utcnow
from tests.payloads import github_headers, github_push

SECRET = "group-commit-secret"


@pytest.fixture
def trigger(client):
    repository = f"acme/group-{uuid.uuid4().hex[:8]}"
    return client.post("/api/triggers", json={
        "provider": "github", "repository": repository, "clone_url": "file:///never-cloned",
        "secret": SECRET, "image": repository, "supersede": False,
    }).json


def push(repository: str, branch: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(github_push("push_branch", repository=repository, ref=f"refs/heads/{branch}",
                                  sha=uuid.uuid4().hex + "00000000", clone_url="file:///never-cloned")).encode()
    return body, github_headers(body, SECRET)


def test_concurrent_deliveries_are_each_stored_once_with_their_build_and_replays_are_duplicates(app, trigger):
    deliveries = [push(trigger["repository"], f"b{i % 5}") for i in range(40)]
    replays = deliveries[:10]  # the same delivery ids again, sent while the originals are in flight
    client = app.test_client()

    def send(item: tuple[bytes, dict[str, str]]):
        body, headers = item
        response = client.post("/hooks/github", data=body, headers=headers)
        return headers["X-GitHub-Delivery"], response.status_code, response.json

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, deliveries + replays))

    assert {status for _id, status, _json in answers} == {202}, [a for a in answers if a[1] != 202]
    outcomes: dict[str, list[str]] = {}
    for delivery_id, _status, answer in answers:
        outcomes.setdefault(delivery_id, []).append(answer["outcome"])
    assert len(outcomes) == 40
    for delivery_id, seen in outcomes.items():
        assert sorted(seen) in (["accepted"], ["accepted", "duplicate"]), (delivery_id, seen)
    accepted_builds = [b for _id, _s, answer in answers if answer["outcome"] == "accepted" for b in answer["builds"]]
    assert len(accepted_builds) == 40 and len(set(accepted_builds)) == 40, answers
    with app.extensions["buildhook"].sessions() as session:
        stored = session.scalars(select(Build.delivery_id).where(Build.trigger_id == trigger["id"])).all()
        assert len(stored) == 40 and len(set(stored)) == 40  # one build per accepted delivery
        per_id = dict(session.execute(
            select(Delivery.delivery_id, func.count()).where(Delivery.trigger_id == trigger["id"],
                                                             Delivery.outcome == "accepted")
            .group_by(Delivery.delivery_id)).all())
        assert per_id == {delivery_id: 1 for delivery_id in outcomes}


def first_rule(app, trigger: dict) -> int:
    with app.extensions["buildhook"].sessions() as session:
        return session.scalars(select(TriggerRule.id).where(TriggerRule.trigger_id == trigger["id"])).first()


def write_for(trigger: dict, rule_id: int, key: str, *, trigger_id: int | None = None) -> DeliveryWrite:
    now = utcnow()
    row = {
        "trigger_id": trigger_id if trigger_id is not None else trigger["id"], "rule_id": rule_id,
        "provider": "github", "repository": trigger["repository"], "clone_url": "file:///never-cloned",
        "ref": "refs/heads/main", "ref_type": "branch", "ref_name": "main", "commit": "c" * 40,
        "image": trigger["repository"], "tags": ["main"], "dockerfile": "Dockerfile", "context": ".",
        "state": "queued", "created_at": now,
    }
    return DeliveryWrite([], now, {
        "provider": "github", "delivery_id": key, "event": "push", "repository": trigger["repository"],
        "trigger_id": trigger["id"], "outcome": "accepted", "status_code": 202,
        "dedupe_key": f"github:{key}", "reason": "queued 1 build(s)", "received_at": now,
    }, [row])


def test_a_write_that_cannot_be_stored_fails_alone_and_a_replay_in_the_same_batch_is_a_duplicate(app, trigger):
    sessions = app.extensions["buildhook"].sessions
    rule_id = first_rule(app, trigger)
    key = uuid.uuid4().hex
    good = write_for(trigger, rule_id, key)
    replay = write_for(trigger, rule_id, key)  # the same delivery, in the same batch
    broken = write_for(trigger, rule_id, uuid.uuid4().hex, trigger_id=2**31 - 7)  # no such trigger: foreign key
    other = write_for(trigger, rule_id, uuid.uuid4().hex)

    commit_batch(sessions, [good, replay, broken, other])

    assert good.error is None and good.delivery_id and len(good.build_ids) == 1
    assert replay.duplicate and replay.error is None and replay.delivery_id is None
    assert broken.error is not None and broken.delivery_id is None
    assert other.error is None and other.delivery_id and len(other.build_ids) == 1
    with sessions() as session:
        stored = session.scalars(select(Build.id).where(Build.trigger_id == trigger["id"])).all()
        assert sorted(stored) == sorted(good.build_ids + other.build_ids)
        assert session.scalar(select(func.count()).select_from(Delivery)
                              .where(Delivery.dedupe_key == f"github:{key}")) == 1


def test_group_commit_raises_a_failed_write_in_the_thread_that_handed_it_over(app, trigger):
    sessions = app.extensions["buildhook"].sessions
    committer = GroupCommit(sessions)
    rule_id = first_rule(app, trigger)
    broken = write_for(trigger, rule_id, uuid.uuid4().hex, trigger_id=2**31 - 7)
    with pytest.raises(Exception) as raised:
        committer.commit(broken)
    assert raised.value is broken.error
    fine = committer.commit(write_for(trigger, rule_id, uuid.uuid4().hex))
    assert fine.error is None and len(fine.build_ids) == 1  # the writer thread lives on


def test_a_replay_of_a_delivery_accepted_earlier_writes_nothing_and_fails_no_other(app, trigger):
    sessions = app.extensions["buildhook"].sessions
    rule_id = first_rule(app, trigger)
    key = uuid.uuid4().hex
    first = write_for(trigger, rule_id, key)
    commit_batch(sessions, [first])
    before = write_for(trigger, rule_id, uuid.uuid4().hex)
    replay = write_for(trigger, rule_id, key)
    after = write_for(trigger, rule_id, uuid.uuid4().hex)

    commit_batch(sessions, [before, replay, after])

    assert replay.duplicate and replay.error is None and replay.delivery_id is None and replay.build_ids == []
    assert before.error is None and after.error is None and before.delivery_id and after.delivery_id
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)
                              .where(Delivery.dedupe_key == f"github:{key}")) == 1
        stored = session.scalars(select(Build.id).where(Build.trigger_id == trigger["id"])).all()
        assert sorted(stored) == sorted(first.build_ids + before.build_ids + after.build_ids)


def test_a_locked_database_fails_the_whole_batch_at_once_not_write_by_write(tmp_path):
    path = tmp_path / "locked.db"
    migrate(f"sqlite:///{path}")
    engine = make_engine(f"sqlite:///{path}?timeout=0.3")
    sessions = make_sessionmaker(engine)
    trigger = {"id": 1, "repository": "acme/locked"}
    writes = [write_for(trigger, 1, uuid.uuid4().hex) for _ in range(5)]
    fd = os.open(f"{path}.write-lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process's hold
    try:
        started = time.monotonic()
        commit_batch(sessions, writes)
        waited = time.monotonic() - started
    finally:
        os.close(fd)
        engine.dispose()
    assert all(isinstance(write.error, WriteLockTimeout) for write in writes)  # each request answers 503
    assert all(write.delivery_id is None for write in writes)
    assert waited < 1.0, f"waited {waited:.2f} s: the writes were retried one by one, 0.3 s each"


def test_a_forked_child_writes_through_its_own_writer_thread(app, trigger):
    sessions = app.extensions["buildhook"].sessions
    committer = GroupCommit(sessions)
    rule_id = first_rule(app, trigger)
    committer.commit(write_for(trigger, rule_id, uuid.uuid4().hex))  # the parent's writer thread now runs
    child_key = uuid.uuid4().hex
    pid = os.fork()
    if pid == 0:  # as a gunicorn worker forked from a process whose writer had started
        signal.alarm(20)  # a write left waiting for the parent's thread (absent here) would hang
        code = 1
        try:
            app.extensions["buildhook"].engine.dispose(close=False)  # the parent's connections stay the parent's
            written = committer.commit(write_for(trigger, rule_id, child_key))
            code = 0 if written.delivery_id and written.build_ids else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)
                              .where(Delivery.dedupe_key == f"github:{child_key}")) == 1


def test_deliveries_that_arrive_while_another_process_writes_are_committed_together(app, trigger):
    """The writer waits for the database's write lock before it takes its batch: whatever is handed
    over meanwhile joins it, one commit for all (SQLite: the lock is its cross-process flock)."""
    services = app.extensions["buildhook"]
    if services.engine.url.get_backend_name() != "sqlite":
        pytest.skip("the cross-process write lock is SQLite's")

    commits: list[int] = []

    def count(_connection) -> None:
        commits.append(1)

    event.listen(services.engine, "commit", count)
    committer = GroupCommit(services.sessions)
    rule_id = first_rule(app, trigger)
    writes = [write_for(trigger, rule_id, uuid.uuid4().hex) for _ in range(6)]
    fd = os.open(f"{services.engine.url.database}.write-lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process is writing
    try:
        with ThreadPoolExecutor(6) as pool:
            first = pool.submit(committer.commit, writes[0])
            time.sleep(0.3)  # the writer is waiting for the lock with the first delivery handed over
            rest = [pool.submit(committer.commit, write) for write in writes[1:]]
            time.sleep(0.3)
            fcntl.flock(fd, fcntl.LOCK_UN)
            wait([first, *rest], timeout=30)
    finally:
        os.close(fd)
        event.remove(services.engine, "commit", count)
    assert all(write.error is None and len(write.build_ids) == 1 for write in writes)
    assert len(commits) == 1, f"{len(commits)} commits for deliveries that were all waiting together"
