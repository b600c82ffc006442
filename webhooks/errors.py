"""The one place that maps exceptions to HTTP answers."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from builder.db.engine import WriteLockTimeout, database_unavailable
from builder.errors import InputError, TransientError
from webhooks.context import close_db

log = logging.getLogger(__name__)


ERROR_TITLES = {400: "Cannot do that", 403: "Not allowed", 404: "Not found", 405: "Not allowed here",
                409: "Cannot do that now", 429: "Too many requests", 500: "Something broke"}


def error_page(error: HTTPException):  # type: ignore[no-untyped-def]
    """A page like the others (navigation, styles) for a status a person meets."""
    if error.code is None or error.code < 400:
        return error
    message = error.description if error.code != 404 else f"There is no page at {request.path}."
    title = ERROR_TITLES.get(error.code, error.name)
    return render_template("error.html", status=error.code, title=title, message=message), error.code


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
        if not request.path.startswith(("/api/", "/hooks/", "/registry/", "/badge/")):
            return error_page(error)
        return jsonify({"error": error.description, "status": error.code}), error.code

    @app.errorhandler(DBAPIError)
    @app.errorhandler(PoolTimeout)
    @app.errorhandler(WriteLockTimeout)
    def database_error(error: Exception):  # type: ignore[no-untyped-def]
        """503 while the database is unavailable (a Git host retries); any other database error is a bug."""
        if not database_unavailable(error):
            raise error  # Flask logs it with its traceback and answers 500
        log.warning("database unavailable: %s", getattr(error, "orig", None) or error)
        response = jsonify({"error": "database unavailable, retry later", "status": 503})
        response.headers["Retry-After"] = "5"
        return response, 503
