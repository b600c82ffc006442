"""The Redis transport buildhook's Celery app uses: kombu's, with one client per channel for publishing."""

from __future__ import annotations

import base64
import json

import redis

from buildhook.redis_server import RedisServer
from webhooks import create_app
from workers.broker_transport import TRANSPORT
from workers.celery_app import celery_config, send_build


def test_redis_urls_use_the_publishing_transport_and_others_keep_their_own(settings):
    assert celery_config(settings.with_(broker_url="redis://127.0.0.1:6379/0"))["broker_transport"] == TRANSPORT
    assert "broker_transport" not in celery_config(settings.with_(broker_url="rediss://127.0.0.1:6380/0"))
    assert "broker_transport" not in celery_config(settings.with_(broker_url="sentinel://127.0.0.1:26379"))
    assert "broker_transport" not in celery_config(settings.with_(broker_url="amqp://127.0.0.1//"))


def test_builds_published_through_one_client_arrive_as_celery_task_messages(settings, tmp_path):
    with RedisServer(tmp_path / "redis") as server:
        app = create_app(settings.with_(broker_url=server.url))
        celery = app.extensions["celery"]
        for build_id in (11, 12, 13):
            send_build(celery, build_id)

        messages = [json.loads(m) for m in reversed(redis.Redis(port=server.port).lrange("celery", 0, -1))]
        assert [m["headers"]["task"] for m in messages] == ["buildhook.run_build"] * 3
        assert [json.loads(base64.b64decode(m["body"]))[0] for m in messages] == [[11], [12], [13]]
        with celery.producer_or_acquire() as producer:
            channel = producer.channel
            assert type(channel).__module__ == "workers.broker_transport"
            celery.send_task("buildhook.run_build", args=[14], producer=producer)
            client = channel._sync_client
            celery.send_task("buildhook.run_build", args=[15], producer=producer)
            assert client is not None and channel._sync_client is client  # reused, not made per message
        assert redis.Redis(port=server.port).llen("celery") == 5
        app.extensions["buildhook"].engine.dispose()


def test_a_rediss_broker_still_connects_with_tls(settings):
    app = create_app(settings.with_(broker_url="rediss://127.0.0.1:6380/0"))
    connection = app.extensions["celery"].connection_for_write()
    assert connection.transport_cls == "rediss" and connection.ssl  # kombu's TLS, not plain text
    app.extensions["buildhook"].engine.dispose()
