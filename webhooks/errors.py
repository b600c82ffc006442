"""The one place that maps exceptions to HTTP answers."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from builder.errors import InputError, TransientError
from webhooks.context import close_db

log = logging.getLogger(__name__)


def register(app: Flask) -> None:
    app.teardown_appcontext(close_db)

    @app.errorhandler(InputError)
    def input_error(error: InputError):  # type: ignore[no-untyped-def]
        body = {"error": str(error), "status": error.status}
        delivery = getattr(error, "delivery", None)
        if delivery is not None:
            body["delivery"] = delivery
        return jsonify(body), error.status

    @app.errorhandler(TransientError)
    def transient_error(error: TransientError):  # type: ignore[no-untyped-def]
        log.warning("temporarily unavailable: %s", error)
        return jsonify({"error": str(error), "status": 503}), 503

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):  # type: ignore[no-untyped-def]
        if not request.path.startswith(("/api/", "/hooks/", "/registry/")):
            return error
        return jsonify({"error": error.description, "status": error.code}), error.code

    @app.errorhandler(OperationalError)
    def database_down(error: OperationalError):  # type: ignore[no-untyped-def]
        log.error("database unavailable: %s", error.orig)
        return jsonify({"error": "database unavailable, retry later", "status": 503}), 503
