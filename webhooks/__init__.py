"""The Flask app: inbound hooks, the JSON API and the dashboard."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter, Map

from builder.container import Container
from builder.builds.fair_share import queue_position
from builder.ids import MAX_ID
from builder.settings import Settings
from webhooks.assets import TEMPLATES

Services = Container  # what views get from ``app.extensions["buildhook"]``: the process's application container


class IdConverter(IntegerConverter):
    """``<int:...>`` in routes: an id beyond the id columns' range is a 404, not a database overflow."""

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__, template_folder=str(TEMPLATES))
    app.config["MAX_CONTENT_LENGTH"] = None  # hooks check sizes themselves and record it
    app.config["SECRET_KEY"] = hashlib.sha256(b"buildhook-sessions:" + settings.secret_key.encode()).hexdigest()
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_SECURE"] = settings.public_url.startswith("https://")
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(seconds=settings.session_lifetime)
    if settings.proxy_hops:  # only then is X-Forwarded-For believed: the client address signs in
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops)  # type: ignore[method-assign]
    app.json.sort_keys = False  # type: ignore[attr-defined]

    from workers.celery_app import celery_of, container_for

    container = container_for(settings)  # as the worker and the CLI build theirs
    app.extensions["buildhook"] = container
    app.extensions["celery"] = celery_of(container)

    from webhooks import api, auth, build_actions, dashboard, deploy_api, errors, hooks, openapi, registry
    from webhooks import security_headers
    from webhooks import badges

    from webhooks import environments_api
    from webhooks import metrics

    app.url_map.converters["int"] = IdConverter  # before the routes: <int:...> ids fit the columns
    app.register_blueprint(api.bp)
    app.register_blueprint(build_actions.bp)
    app.register_blueprint(deploy_api.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(registry.bp)
    environments_api.register(app)  # before the dashboard blueprint: its pages join it
    app.register_blueprint(metrics.bp)
    app.register_blueprint(badges.bp)
    app.jinja_env.globals["queue_position"] = queue_position  # the build page's "1 ahead; trigger limit 1 (1 running)"
    app.register_blueprint(dashboard.bp)
    errors.register(app)
    auth.register(app)
    security_headers.register(app, https=settings.public_url.startswith("https://"))
    hooks.install(app, https=settings.public_url.startswith("https://"))  # POST /hooks/<provider>, before Flask

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
