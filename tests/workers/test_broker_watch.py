"""The relay learns that the broker lost its messages once, whatever the number of workers, on a real Redis.

Redis database 9 of the session's Redis: no other test's messages or keys.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import redis

from builder.db.engine import make_engine, make_sessionmaker, migrate
from builder.db.models import Build, Deployment, utcnow
from builder.builds.outbox import forget_dispatches, relay_pending
from workers.broker_watch import KEY, BrokerWatch


@pytest.fixture
def broker_url(redis_server) -> str:
    url = re.sub(r"/\d+$", "/9", redis_server.url)
    redis.Redis.from_url(url).flushdb()
    return url


def test_a_loss_is_seen_once_by_one_relay_and_not_when_the_broker_kept_its_data(broker_url):
    first, second = BrokerWatch(broker_url), BrokerWatch(broker_url)
    calls: list[str] = []
    assert first.after_loss(lambda: calls.append("first"))  # a broker never looked at: nothing to trust
    assert not first.after_loss(lambda: calls.append("again")) and not second.after_loss(lambda: calls.append("2nd"))
    redis.Redis.from_url(broker_url).flushdb()  # what a restart without persistence leaves
    assert [second.after_loss(lambda: calls.append("second")), first.after_loss(lambda: calls.append("x"))] \
        == [True, False]
    assert calls == ["first", "second"]
    assert BrokerWatch("redis://127.0.0.1:9/0").after_loss(lambda: calls.append("down")) is False  # unreachable
    assert BrokerWatch(None).after_loss(lambda: calls.append("none")) is False
    first.close()
    second.close()


def test_a_resend_that_fails_is_tried_again_on_the_next_pass(broker_url):
    watch = BrokerWatch(broker_url)

    def database_down() -> None:
        raise ConnectionError("database unavailable")

    with pytest.raises(ConnectionError):
        watch.after_loss(database_down)
    assert not redis.Redis.from_url(broker_url).exists(KEY)
    assert watch.after_loss(lambda: None)
    watch.close()


def test_forgetting_dispatches_makes_the_relay_send_every_unclaimed_build_now(tmp_path):
    url = f"sqlite:///{tmp_path / 'forget.db'}"
    migrate(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    now = utcnow()

    def build(state: str) -> int:
        with sessions() as session:
            row = Build(provider="github", repository="acme/lost", clone_url="https://git.example.com/a.git",
                        ref="refs/heads/main", ref_type="branch", ref_name="main", commit="a" * 40,
                        image="127.0.0.1:5000/acme/lost", tags=["main"], dockerfile="Dockerfile", context=".",
                        state=state, created_at=now - timedelta(seconds=30), dispatched_at=now - timedelta(seconds=20))
            session.add(row)
            session.commit()
            return row.id

    lost, running = build("queued"), build("building")
    with sessions() as session:
        deployment = Deployment(environment="staging", kind="webhook", repository="acme/lost", tag="main",
                                dispatched_at=now)
        session.add(deployment)
        session.commit()
        deployment_id = deployment.id
    sent: list[int] = []
    assert relay_pending(sessions, sent.append, grace_seconds=1) == 0  # sent 20 s ago: not before 600 s

    assert forget_dispatches(sessions) == (1, 1)
    assert relay_pending(sessions, sent.append, grace_seconds=1) == 1 and sent == [lost]
    with sessions() as session:
        assert session.get(Build, running).dispatched_at is not None
        assert session.get(Deployment, deployment_id).dispatched_at is None
    engine.dispose()
