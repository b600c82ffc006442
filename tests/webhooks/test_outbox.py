"""An accepted webhook is never lost when the broker is down: the outbox relays it later."""

from __future__ import annotations

import base64
import json

import redis
from sqlalchemy import select

from builder.models import Build
from builder.outbox import relay_pending
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
