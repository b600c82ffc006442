"""The dispatcher sends only the builds still worth building: not those a later push replaced."""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from builder.builds.dispatcher import Dispatcher
from builder.db.group_commit import DeliveryWrite
from builder.db.models import Build, utcnow
from builder.secrets import SecretBox
from builder.triggers.services import TriggerSpec, create_trigger
from buildhook.redis_server import RedisServer
from tests.payloads import github_headers, github_push
from tests.webhooks.test_outbox import assert_only_sent, queued_tasks, wait_marked
from webhooks import create_app
from webhooks.hooks import dispatch_marks, group_commit


class PlannedTogether:
    """The app's group commit, but each write waits until ``n`` requests have planned theirs: as when
    concurrent deliveries are planned before any of them is committed, so none sees the others."""

    def __init__(self, inner, n: int) -> None:
        self._inner = inner
        self._barrier = threading.Barrier(n, timeout=30)

    def commit(self, write: DeliveryWrite) -> DeliveryWrite:
        self._barrier.wait()
        return self._inner.commit(write)


def _app_with_trigger(settings, broker_url: str, supersede: bool = True):
    app = create_app(settings.with_(broker_url=broker_url))
    services = app.extensions["buildhook"]
    repository = f"acme/together-{uuid.uuid4().hex[:8]}"
    with services.sessions() as session:
        create_trigger(session, SecretBox(settings.secret_key), TriggerSpec(
            provider="github", repository=repository, clone_url="file:///x", secret="s", image="acme/together",
            supersede=supersede), settings.registry, allow_file_clones=True)
        session.commit()
    return app, services, repository


def _push_concurrently(app, services, repository: str, pushes: int) -> list[int]:
    """``pushes`` pushes to main, each on top of the last, planned together; the build ids, oldest first."""
    app.extensions["buildhook.group_commit"] = PlannedTogether(group_commit(app, services), pushes)
    # A window no slow machine outruns: every build of the burst is in one batch.
    app.extensions["buildhook.dispatcher"] = Dispatcher(services.sessions, services.send,
                                                        dispatch_marks(app, services).add, window=1.0)
    shas = [uuid.uuid4().hex + "00000000" for _ in range(pushes + 1)]

    def push(before: str, sha: str) -> list[int]:
        payload = github_push("push_branch", repository=repository, ref="refs/heads/main", sha=sha,
                              clone_url="file:///x")
        payload["before"] = before
        body = json.dumps(payload).encode()
        answer = app.test_client().post("/hooks/github", data=body, headers=github_headers(body, "s")).json
        assert answer["outcome"] == "accepted", answer
        return answer["builds"]

    with ThreadPoolExecutor(pushes) as pool:
        built = list(pool.map(push, shas, shas[1:]))
    return [ids[0] for ids in built]


def _states(services, build_ids: list[int]) -> dict[int, tuple[str, str | None]]:
    with services.sessions() as session:
        return {b: (session.get(Build, b).state, session.get(Build, b).reason) for b in build_ids}


def test_concurrent_pushes_planned_unseen_send_only_the_newest_and_supersede_the_rest(settings, tmp_path):
    """Four pushes to one branch, each planned before the others were committed: all four are accepted
    queued, then the dispatcher sends only the newest and supersedes each older one by the push on top."""
    with RedisServer(tmp_path / "redis") as server:
        app, services, repository = _app_with_trigger(settings, server.url)
        built = _push_concurrently(app, services, repository, 4)
        assert {state for state, _reason in _states(services, built).values()} == {"queued"}  # none saw another

        newest = built[-1]
        assert_only_sent(services, server.port, newest)
        with services.sessions() as session:
            commits = {b: session.get(Build, b).commit for b in built}
        states = _states(services, built)
        assert states[newest] == ("queued", None)
        for older, on_top in zip(built, built[1:]):
            assert states[older] == ("superseded", f"superseded by a newer push of {commits[on_top][:7]}")
        services.engine.dispose()


def test_a_trigger_that_does_not_supersede_gets_every_concurrent_push_built(settings, tmp_path):
    with RedisServer(tmp_path / "redis") as server:
        app, services, repository = _app_with_trigger(settings, server.url, supersede=False)
        built = _push_concurrently(app, services, repository, 3)

        assert all(wait_marked(services, built).values())
        sent = sorted(args[0] for task, args in queued_tasks(server.port) if task == "buildhook.run_build")
        assert sent == sorted(built)
        assert {state for state, _reason in _states(services, built).values()} == {"queued"}
        services.engine.dispose()


@pytest.mark.parametrize("built_first", [True, False])
def test_a_branch_pushed_back_to_an_earlier_commit_builds_that_commit_again(settings, tmp_path, built_first):
    """A -> B (built, or still queued: then the push back supersedes B's build); then the branch is pushed
    back to A (before: B). The build of B was pushed on top of A, but A is the newer push now: it is
    sent, not superseded."""
    with RedisServer(tmp_path / "redis") as server:
        app, services, repository = _app_with_trigger(settings, server.url)
        app.extensions["buildhook.dispatcher"] = Dispatcher(services.sessions, services.send,
                                                            dispatch_marks(app, services).add, window=1.0)
        client = app.test_client()
        a, b, o = (uuid.uuid4().hex + "00000000" for _ in range(3))

        def push(sha: str, before: str) -> int:
            payload = github_push("push_branch", repository=repository, ref="refs/heads/main", sha=sha,
                                  clone_url="file:///x")
            payload["before"] = before
            body = json.dumps(payload).encode()
            [build_id] = client.post("/hooks/github", data=body, headers=github_headers(body, "s")).json["builds"]
            return build_id

        built = [push(a, o), push(b, a)]
        with services.sessions() as session:  # built and pushed, or sent and still waiting for a worker
            for build_id in built:
                build = session.get(Build, build_id)
                build.state, build.dispatched_at = ("succeeded", None) if built_first else ("queued", utcnow())
            session.commit()
        back = push(a, b)
        if not built_first:
            assert _states(services, built)[built[1]][0] == "superseded"

        assert_only_sent(services, server.port, back)
        assert _states(services, [back]) == {back: ("queued", None)}
        services.engine.dispose()
