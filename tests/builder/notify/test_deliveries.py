"""Outbound deliveries (subscriptions, deploy webhooks) are tried ``BUILDHOOK_DELIVERY_ATTEMPTS`` times, then
given up as failed. A real SQLite database of its own and a local HTTP receiver that answers 503."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from builder.db.engine import make_engine, make_sessionmaker, migrate
from builder.db.models import OutboundDelivery, utcnow
from builder.deploys.deployments import receive_registry_events
from builder.notify.deliveries import send_delivery
from builder.notify.subscriptions import create_subscription
from builder.registries import ImagePushed
from builder.secrets import SecretBox


@pytest.fixture
def own_settings(settings, tmp_path):
    """The suite's settings on a database of their own: the suite's worker never sends these deliveries."""
    url = f"sqlite:///{tmp_path / 'deliveries.db'}"
    migrate(url)
    return settings.with_(database_url=url)


@pytest.mark.parametrize("attempts", [1, 3])
def test_a_failing_subscriber_is_tried_delivery_attempts_times_then_given_up(own_settings, receiver, attempts):
    settings = own_settings.with_(delivery_attempts=attempts)
    engine = make_engine(settings.database_url)
    sessions, box = make_sessionmaker(engine), SecretBox(settings.secret_key)
    with sessions() as session:
        create_subscription(session, box, url=f"{receiver.url}/hook", events=["image.pushed"], secret=None,
                            trigger_id=None, ref_pattern=None, style="json", policy=settings.target_policy())
        session.commit()
    receiver.failures = [503] * 20
    pushed = ImagePushed(source="distribution", event_id="e1", registry=settings.registry, repository="acme/widget",
                         tag="main", digest=None, media_type=None, pushed_at=None, actor=None)
    [delivery_id] = receive_registry_events(sessions, "distribution", [pushed], settings).deliveries

    states = []
    while not states or states[-1] == "pending":
        assert len(states) < 20, states
        with sessions() as session:  # time passes: the next attempt is due now, not after its backoff
            session.execute(update(OutboundDelivery).values(next_attempt_at=utcnow()))
            session.commit()
        states.append(send_delivery(sessions, box, delivery_id, policy=settings.target_policy()))

    assert states == ["pending"] * (attempts - 1) + ["failed"]
    assert len(receiver.posts("/hook")) == attempts
    with sessions() as session:
        delivery = session.get(OutboundDelivery, delivery_id)
        assert (delivery.attempts, delivery.max_attempts) == (attempts, attempts)
    engine.dispose()
