"""The Flask app: inbound hooks, the JSON API and the dashboard."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from flask import Flask
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from builder.db import make_engine, make_sessionmaker
from builder.secrets import SecretBox
from builder.settings import Settings

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@dataclass
class Services:
    """What views and tasks need, built once per app."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    box: SecretBox
    app: Flask

    def send(self, build_id: int) -> None:
        from workers.celery_app import send_build

        send_build(self.app.extensions["celery"], build_id)

    def report(self, build_id: int, state: str) -> None:
        """Queue a commit status report; a broker failure here never fails anything."""
        from workers.celery_app import send_status

        try:
            send_status(self.app.extensions["celery"], build_id, state)
        except Exception as exc:  # statuses are best effort
            log.warning("commit status for build %s not queued: %s", build_id, exc)


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__, template_folder=str(TEMPLATES))
    app.config["MAX_CONTENT_LENGTH"] = None  # hooks check sizes themselves and record it
    app.json.sort_keys = False  # type: ignore[attr-defined]
    engine = make_engine(settings.database_url)
    app.extensions["buildhook"] = Services(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        box=SecretBox(settings.secret_key),
        app=app,
    )

    from workers.celery_app import celery_init_app
    from webhooks import api, dashboard, errors, hooks

    celery_init_app(app, settings)
    app.register_blueprint(hooks.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(dashboard.bp)
    errors.register(app)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
