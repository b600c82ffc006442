"""An accepted webhook is never lost when the broker is down: the outbox relays it later."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
import uuid

import redis
from sqlalchemy import select

from builder.db.models import Build
from builder.notify.subscriptions import create_subscription
from builder.builds.outbox import dispatch, relay_pending
from builder.secrets import SecretBox
from builder.triggers.services import TriggerSpec, create_trigger
from buildhook.redis_server import RedisServer, free_port
from tests.conftest import signed_in
from tests.payloads import github_headers, github_push
from webhooks import create_app


def queued_build_ids(port: int) -> list[int]:
    """The build ids of the task messages waiting in Redis (kombu's JSON envelope)."""
    ids = []
    for message in redis.Redis(port=port).lrange("celery", 0, -1):
        args, _kwargs, _embed = json.loads(base64.b64decode(json.loads(message)["body"]))
        ids.extend(args)
    return ids


def test_webhook_is_accepted_and_kept_while_redis_is_down_then_relayed(settings, tmp_path, admin_token):
    port = free_port()
    app = create_app(settings.with_(broker_url=f"redis://127.0.0.1:{port}/0"))
    client = signed_in(app.test_client(), admin_token)
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": "acme/outbox", "clone_url": "file:///x", "secret": "s",
        "image": "acme/outbox"}).json
    payload = github_push("push_branch", repository="acme/outbox", ref="refs/heads/main", sha="e" * 40,
                          clone_url="file:///x")
    body = json.dumps(payload).encode()

    response = client.post("/hooks/github", data=body, headers=github_headers(body, "s"))
    assert response.status_code == 202
    [build_id] = response.json["builds"]
    services = app.extensions["buildhook"]
    with services.sessions() as session:
        build = session.get(Build, build_id)
        assert (build.state, build.dispatched_at) == ("queued", None)

    with RedisServer(tmp_path / "redis", port=port):
        assert relay_pending(services.sessions, services.send, grace_seconds=0) >= 1
        assert build_id in queued_build_ids(port)
        with services.sessions() as session:
            assert session.get(Build, build_id).dispatched_at is not None
            undispatched = session.scalars(
                select(Build.id).where(Build.trigger_id == trigger["id"], Build.dispatched_at.is_(None)))
            assert list(undispatched) == []


def test_once_the_broker_refuses_a_build_the_others_are_left_to_the_relay_untried(settings, tmp_path, admin_token):
    port = free_port()
    app = create_app(settings.with_(broker_url=f"redis://127.0.0.1:{port}/0"))
    client = signed_in(app.test_client(), admin_token)
    client.post("/api/triggers", json={"provider": "github", "repository": "acme/refused", "clone_url": "file:///x",
                                       "secret": "s", "image": "acme/refused"})
    build_ids = []
    for branch in ("main", "dev", "next"):
        body = json.dumps(github_push("push_branch", repository="acme/refused", ref=f"refs/heads/{branch}",
                                      sha=uuid.uuid4().hex + "00000000", clone_url="file:///x")).encode()
        build_ids += client.post("/hooks/github", data=body, headers=github_headers(body, "s")).json["builds"]
    services = app.extensions["buildhook"]
    tried = []

    def send(build_id: int) -> None:
        tried.append(build_id)
        services.send(build_id)  # Redis is down: each try waits for it

    assert dispatch(services.sessions, send, build_ids) == build_ids
    assert tried == build_ids[:1]
    with RedisServer(tmp_path / "redis", port=port):
        assert relay_pending(services.sessions, services.send, grace_seconds=0) >= 3
        assert set(build_ids) <= set(queued_build_ids(port))


def queued_tasks(port: int) -> list[tuple[str, list]]:
    """(task name, args) of every message waiting in Redis, oldest first."""
    tasks = []
    for message in reversed(redis.Redis(port=port).lrange("celery", 0, -1)):
        envelope = json.loads(message)
        args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        tasks.append((envelope["headers"]["task"], args))
    return tasks


def wait_sent(port: int, build_ids: list[int], timeout: float = 5.0) -> list[tuple[str, list]]:
    """The waiting messages, once every one of ``build_ids`` was sent (the dispatcher's thread sends them)."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = queued_tasks(port)
        sent = {args[0] for task, args in tasks if task == "buildhook.run_build"}
        if set(build_ids) <= sent or time.monotonic() > deadline:
            return tasks
        time.sleep(0.02)


def wait_marked(services, build_ids: list[int], timeout: float = 5.0) -> dict[int, object]:
    deadline = time.monotonic() + timeout
    while True:
        with services.sessions() as session:
            marks = {b: session.get(Build, b).dispatched_at for b in build_ids}
        if all(marks.values()) or time.monotonic() > deadline:
            return marks
        time.sleep(0.05)


def assert_only_sent(services, port: int, build_id: int) -> None:
    """``build_id`` is sent and marked, and is the one build waiting in the broker."""
    assert all(wait_marked(services, [build_id]).values())
    time.sleep(0.3)  # anything else would have gone with it
    assert [args for task, args in queued_tasks(port) if task == "buildhook.run_build"] == [[build_id]]


def test_each_build_is_sent_once_marked_later_and_queued_is_announced_only_to_listeners(settings, tmp_path):
    """One broker message per accepted build, sent after the answer; dispatched_at written in a batch;
    a "queued" report only for triggers with a status token or a subscription to build.queued."""
    with RedisServer(tmp_path / "redis") as server:
        app = create_app(settings.with_(broker_url=server.url))
        services = app.extensions["buildhook"]
        box = SecretBox(settings.secret_key)
        suffix = uuid.uuid4().hex[:8]
        specs = {
            "quiet": TriggerSpec(provider="github", repository=f"acme/quiet-{suffix}", clone_url="file:///x",
                                 secret="s", image="acme/quiet"),
            "status": TriggerSpec(provider="github", repository=f"acme/status-{suffix}", clone_url="file:///x",
                                  secret="s", image="acme/status", status_token="ghp-token"),
            "subscribed": TriggerSpec(provider="github", repository=f"acme/subscribed-{suffix}",
                                      clone_url="file:///x", secret="s", image="acme/subscribed"),
        }
        with services.sessions() as session:
            triggers = {name: create_trigger(session, box, spec, settings.registry, allow_file_clones=True)
                        for name, spec in specs.items()}
            session.flush()
            create_subscription(session, box, url="https://hooks.example.test/builds", events=["build.queued"],
                                secret=None, trigger_id=triggers["subscribed"].id, ref_pattern=None, style="json",
                                policy=settings.target_policy())
            session.commit()
        client = app.test_client()
        built: dict[str, list[int]] = {}
        for name, spec in specs.items():
            built[name] = []
            for _ in range(2):
                body = json.dumps(github_push("push_branch", repository=spec.repository, ref="refs/heads/main",
                                              sha=uuid.uuid4().hex + "00000000", clone_url="file:///x")).encode()
                response = client.post("/hooks/github", data=body, headers=github_headers(body, "s"))
                assert response.status_code == 202, response.json
                built[name] += response.json["builds"]

        every = [b for ids in built.values() for b in ids]
        tasks = wait_sent(server.port, every)
        assert sorted(args[0] for task, args in tasks if task == "buildhook.run_build") == sorted(every)
        reports = [args for task, args in tasks if task == "buildhook.report_status"]
        assert sorted(reports) == sorted([b, "queued"] for b in built["status"] + built["subscribed"])
        for build_id in built["status"]:  # announced before it is handed to a worker
            assert tasks.index(("buildhook.report_status", [build_id, "queued"])) < \
                tasks.index(("buildhook.run_build", [build_id]))

        assert all(wait_marked(services, every).values())
        # marked: the relay does not send them again
        relay_pending(services.sessions, services.send, grace_seconds=0)
        sent = [args[0] for task, args in queued_tasks(server.port) if task == "buildhook.run_build"]
        assert all(sent.count(b) == 1 for b in every)
        services.engine.dispose()


def test_a_burst_of_pushes_to_one_branch_sends_only_the_build_still_queued(settings, tmp_path):
    """Each push is on top of the last, so each supersedes the one before: the dispatcher, a moment
    after the answers, sends only the newest; the others are never a broker message."""
    with RedisServer(tmp_path / "redis") as server:
        app = create_app(settings.with_(broker_url=server.url))
        services = app.extensions["buildhook"]
        repository = f"acme/burst-{uuid.uuid4().hex[:8]}"
        with services.sessions() as session:
            create_trigger(session, SecretBox(settings.secret_key), TriggerSpec(
                provider="github", repository=repository, clone_url="file:///x", secret="s", image="acme/burst"),
                settings.registry, allow_file_clones=True)
            session.commit()
        from builder.builds.dispatcher import Dispatcher
        from webhooks.hooks import dispatch_marks

        # This app's dispatcher, with a window no slow machine outruns (the default is 200 ms)
        app.extensions["buildhook.dispatcher"] = Dispatcher(services.sessions, services.send,
                                                            dispatch_marks(app, services).add, window=1.0)
        client = app.test_client()
        shas = [uuid.uuid4().hex + "00000000" for _ in range(6)]
        built = []
        for before, sha in zip(shas, shas[1:]):
            payload = github_push("push_branch", repository=repository, ref="refs/heads/main", sha=sha,
                                  clone_url="file:///x")
            payload["before"] = before
            body = json.dumps(payload).encode()
            answer = client.post("/hooks/github", data=body, headers=github_headers(body, "s")).json
            assert answer["outcome"] == "accepted", answer
            built += answer["builds"]

        newest = built[-1]
        assert_only_sent(services, server.port, newest)
        with services.sessions() as session:
            states = {b: session.get(Build, b).state for b in built}
        assert states == {**{b: "superseded" for b in built[:-1]}, newest: "queued"}
        services.engine.dispose()


def test_dispatch_marks_keeps_marks_the_database_refused_and_writes_them_later(settings, tmp_path):
    from sqlalchemy import update

    from builder.db.engine import make_engine, make_sessionmaker, migrate
    from builder.builds.outbox import DispatchMarks

    path = tmp_path / "marks.db"
    migrate(f"sqlite:///{path}")
    with RedisServer(tmp_path / "redis") as server:
        app = create_app(settings.with_(database_url=f"sqlite:///{path}", broker_url=server.url))
        services = app.extensions["buildhook"]
        with services.sessions() as session:
            create_trigger(session, SecretBox(settings.secret_key), TriggerSpec(
                provider="github", repository="acme/marks", clone_url="file:///x", secret="s", image="acme/marks"),
                settings.registry, allow_file_clones=True)
            session.commit()
        client = app.test_client()
        ids = []
        for _ in range(3):
            body = json.dumps(github_push("push_branch", repository="acme/marks", ref="refs/heads/main",
                                          sha=uuid.uuid4().hex + "00000000", clone_url="file:///x")).encode()
            ids += client.post("/hooks/github", data=body, headers=github_headers(body, "s")).json["builds"]
        assert all(wait_marked(services, ids).values())  # the app's own batch
        with services.sessions() as session:
            session.execute(update(Build).where(Build.id.in_(ids)).values(dispatched_at=None))
            session.commit()

        engine = make_engine(f"sqlite:///{path}?timeout=0.1")
        marks = DispatchMarks(make_sessionmaker(engine), interval=0.05)
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            assert marks.flush()  # nothing to write yet
            marks.add(ids)
            assert not marks.flush() and marks.pending() == len(ids)  # locked: kept for the next try
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert all(wait_marked(services, ids).values())  # its thread retried, with backoff
        assert marks.pending() == 0
        engine.dispose()
        services.engine.dispose()


def test_relay_resends_an_unclaimed_build_at_growing_intervals_and_a_never_sent_one_every_pass(settings):
    """A broker backlog of hours: a sent-but-unclaimed build gets a handful of copies, not one every
    ten minutes; a build the broker never got is sent on the next pass, whatever its age."""
    from datetime import timedelta

    from builder.db.models import utcnow
    from builder.builds.outbox import next_dispatch_mark

    app = create_app(settings)
    services = app.extensions["buildhook"]
    now = utcnow() - timedelta(days=1)  # the relay is given its clock; no real time passes

    def new_build(dispatched: bool) -> int:
        with services.sessions() as session:
            build = Build(provider="github", repository="acme/relay", clone_url="file:///x", ref="refs/heads/main",
                          ref_type="branch", ref_name="main", commit="f" * 40, image="acme/relay",
                          dockerfile="Dockerfile", context=".", created_at=now,
                          dispatched_at=now if dispatched else None)
            session.add(build)
            session.commit()
            return build.id

    sent_once, never_sent = new_build(True), new_build(False)
    sent: list[int] = []
    broker_takes_never_sent = False

    def send(build_id: int) -> None:
        if build_id == never_sent and not broker_takes_never_sent:
            raise ConnectionError("broker down")
        sent.append(build_id)

    def relay(minute: int) -> list[int]:
        before = list(sent)
        relay_pending(services.sessions, send, grace_seconds=10, now=now + timedelta(minutes=minute))
        return [b for b in sent[len(before):] if b in (sent_once, never_sent)]

    copies_at = []
    for minute in range(1, 6 * 60 + 1):  # six hours of backlog, a relay pass every minute
        if sent_once in relay(minute):
            copies_at.append(minute)
        if minute == 90:  # the broker takes the other build from now on: it goes on this very pass
            broker_takes_never_sent = True
            assert relay(minute) == [never_sent]
    # Due once ``dispatched_at`` is more than 10 minutes old, so a pass every minute sees it a minute
    # later. The old relay sent a copy every 11 minutes (32 in six hours); now the waits double.
    assert copies_at == [11, 23, 47, 95, 191], copies_at
    assert sent.count(never_sent) == 3  # at 90 minutes, then copies at 101 and 203
    with services.sessions() as session:  # the next copy is not before 191 + 191 minutes
        assert session.get(Build, sent_once).dispatched_at == now + timedelta(minutes=191 + 191 - 10)

    # the waits grow with the build's age, and stop growing at the cap
    created = now - timedelta(hours=2)
    assert next_dispatch_mark(now, now - timedelta(minutes=10), 600) == now
    assert next_dispatch_mark(now, created, 600) == now + timedelta(hours=2) - timedelta(minutes=10)
    assert next_dispatch_mark(now, now - timedelta(days=3), 600, 6 * 3600) == now + timedelta(hours=6, minutes=-10)
    services.engine.dispose()
