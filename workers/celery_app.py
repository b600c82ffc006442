"""The Celery app ``buildhook`` (Celery's recommended layout: one module-level app) and the container it serves.

``container_for(settings)`` is how the web app, the worker and the CLI build the application
container: it configures ``app`` from the settings, gives the container a Celery-backed broker and
binds it, so tasks get it from here (``bound_container()``), not from a Flask app.
"""

from __future__ import annotations

import threading

from celery import Celery
from celery.signals import worker_process_init

from builder.container import Container
from builder.settings import Settings
from workers.broker_transport import REDIS_SCHEMES, TRANSPORT

RUN_BUILD = "buildhook.run_build"
REPORT_STATUS = "buildhook.report_status"
RUN_DEPLOYMENT = "buildhook.deploy"
DELIVER = "buildhook.deliver"

app = Celery("buildhook", include=["workers.tasks"])  # the worker imports its tasks

_binding = threading.Lock()
_bound: Container | None = None
_configured: dict[str, object] | None = None


def celery_config(settings: Settings) -> dict[str, object]:
    broker_url = settings.broker_url or "redis://127.0.0.1:6379/0"
    config: dict[str, object] = {
        "broker_url": broker_url,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
        # A webhook must not hang when the broker is down: the outbox relays later.
        "task_publish_retry": False,
        "broker_connection_timeout": 2,
        "broker_transport_options": {
            "visibility_timeout": settings.build_timeout + 600,
            "socket_connect_timeout": 2,
            "socket_timeout": 5,
        },
        "worker_hijack_root_logger": False,
    }
    if broker_url.partition("://")[0] in REDIS_SCHEMES:
        config["broker_transport"] = TRANSPORT
    return config


class CeleryBroker:
    """The container's broker: one Celery message per id."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def send_build(self, build_id: int) -> None:
        send_build(self.celery, build_id)

    def send_status(self, build_id: int, state: str) -> None:
        send_status(self.celery, build_id, state)

    def send_deployment(self, deployment_id: int) -> None:
        send_deployment(self.celery, deployment_id)

    def send_delivery(self, delivery_id: int) -> None:
        send_outbound(self.celery, delivery_id)


def configured_celery(settings: Settings) -> Celery:
    """``app``, configured from ``settings`` the first time. A process serves one broker; a second,
    different configuration in the same process (tests run several apps) gets a client of its own."""
    global _configured
    config = celery_config(settings)
    with _binding:
        if _configured is None:
            app.config_from_object(config)
            _configured = config
        if config == _configured:
            return app
    other = Celery("buildhook")
    other.config_from_object(config)
    return other


def container_for(settings: Settings) -> Container:
    """The process's container: built from ``settings``, sending through Celery, bound for the tasks."""
    global _bound
    container = Container.from_settings(settings, CeleryBroker(configured_celery(settings)))
    _bound = container
    return container


def celery_of(container: Container) -> Celery:
    """The Celery app ``container`` sends through."""
    broker = container.broker
    if not isinstance(broker, CeleryBroker):
        raise TypeError(f"the container's broker is {type(broker).__name__}, not Celery")
    return broker.celery


def bound_container() -> Container:
    """The container the tasks of this process work with (the last one ``container_for`` built)."""
    if _bound is None:
        raise RuntimeError("no container: build one with workers.celery_app.container_for(settings)")
    return _bound


def _fresh_connections(**_kwargs: object) -> None:
    # A forked pool process must not share the parent's database connections.
    if _bound is not None:
        _bound.engine.dispose(close=False)


worker_process_init.connect(_fresh_connections, weak=False)


def send_build(celery: Celery, build_id: int) -> None:
    celery.send_task(RUN_BUILD, args=[build_id])


def send_status(celery: Celery, build_id: int, state: str) -> None:
    celery.send_task(REPORT_STATUS, args=[build_id, state])


def send_deployment(celery: Celery, deployment_id: int) -> None:
    celery.send_task(RUN_DEPLOYMENT, args=[deployment_id])


def send_outbound(celery: Celery, delivery_id: int) -> None:
    celery.send_task(DELIVER, args=[delivery_id])
