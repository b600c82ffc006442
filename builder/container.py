"""The application container: what the web app, the worker and the CLI share, built one way from a Settings.

The broker is injected as a small protocol (``Broker``): the domain imports no Celery; the worker
package supplies the Celery-backed one (``workers.celery_app.container_for``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from builder.builds.outbox import dispatch
from builder.db.engine import make_engine, make_sessionmaker
from builder.secrets import SecretBox
from builder.settings import Settings

log = logging.getLogger(__name__)


class Broker(Protocol):
    """Hands work to the worker: one message per id."""

    def send_build(self, build_id: int) -> None: ...

    def send_status(self, build_id: int, state: str) -> None: ...

    def send_deployment(self, deployment_id: int) -> None: ...

    def send_delivery(self, delivery_id: int) -> None: ...


@dataclass
class Container:
    """Settings, database, secret box and the broker senders, built once per process."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    box: SecretBox
    broker: Broker

    @classmethod
    def from_settings(cls, settings: Settings, broker: Broker) -> Container:
        engine = make_engine(settings.database_url)
        return cls(settings=settings, engine=engine, sessions=make_sessionmaker(engine),
                   box=SecretBox(settings.secret_key), broker=broker)

    def send(self, build_id: int) -> None:
        self.broker.send_build(build_id)

    def start_builds(self, build_ids: Iterable[int]) -> list[int]:
        """Announce each new (committed) build as queued, for its commit status and the subscriptions to
        ``build.queued``, and hand it to the broker; return the ids the broker did not take (the relay
        sends them). Webhook intake announces only the builds someone listens to (``webhooks/hooks.py``)."""
        return dispatch(self.sessions, self.send, build_ids, on_queued=self.report)

    def start_deployments(self, deployment_ids: list[int]) -> None:
        _best_effort(self.broker.send_deployment, deployment_ids, "deployment")

    def send_deliveries(self, delivery_ids: list[int]) -> None:
        _best_effort(self.broker.send_delivery, delivery_ids, "delivery")

    def report(self, build_id: int, state: str) -> None:
        """Queue the build's state announcement (commit status, subscriptions); never fails anything."""
        try:
            self.broker.send_status(build_id, state)
        except Exception as exc:  # statuses are best effort
            log.warning("commit status for build %s not queued: %s", build_id, exc)


def _best_effort(sender: Callable[[int], None], ids: Iterable[int], what: str) -> None:
    """Send now; rows the broker does not get are picked up by the worker's relay."""
    for item in ids:
        try:
            sender(item)
        except Exception as exc:  # the broker is down: the relay sends it later
            log.warning("%s %s stays queued for the relay: %s", what, item, exc)
