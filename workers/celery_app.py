"""The Celery app, wired the way Flask's own Celery example does it."""

from __future__ import annotations

from celery import Celery, Task
from celery.signals import worker_process_init
from flask import Flask

from builder.settings import Settings
from workers.broker_transport import REDIS_SCHEMES, TRANSPORT

RUN_BUILD = "buildhook.run_build"
REPORT_STATUS = "buildhook.report_status"
RUN_DEPLOYMENT = "buildhook.deploy"
DELIVER = "buildhook.deliver"


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


def celery_init_app(app: Flask, settings: Settings) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery("buildhook", task_cls=FlaskTask)
    celery.config_from_object(celery_config(settings))
    celery.set_default()

    def fresh_connections(**_kwargs: object) -> None:
        # A forked pool process must not share the parent's database connections.
        app.extensions["buildhook"].engine.dispose(close=False)

    worker_process_init.connect(fresh_connections, weak=False)
    import workers.tasks  # noqa: F401  (registers the tasks on this app)

    app.extensions["celery"] = celery
    return celery


def send_build(celery: Celery, build_id: int) -> None:
    celery.send_task(RUN_BUILD, args=[build_id])


def send_status(celery: Celery, build_id: int, state: str) -> None:
    celery.send_task(REPORT_STATUS, args=[build_id, state])


def send_deployment(celery: Celery, deployment_id: int) -> None:
    celery.send_task(RUN_DEPLOYMENT, args=[deployment_id])


def send_outbound(celery: Celery, delivery_id: int) -> None:
    celery.send_task(DELIVER, args=[delivery_id])
